// Package http is Logbook's native HTTP API: every route of the write and
// read API, the read-model admin endpoints, the web UI's assets and the
// per-key rate limit. It turns requests into calls of the services (ingest
// for writes, query for reads) and their coded errors (package errs) into
// statuses, in one function (Status).
package http

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
)

// MaxBody is the default limit on a request body.
const MaxBody = 4 << 20

// APIKey returns the API key of a request: "Authorization: Bearer <key>" or
// W&B's "Authorization: Basic base64(api:<key>)".
func APIKey(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if k, ok := strings.CutPrefix(h, "Bearer "); ok && k != "" {
		return strings.TrimSpace(k), true
	}
	if b, ok := strings.CutPrefix(h, "Basic "); ok {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b))
		if err != nil {
			return "", false
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		return pass, ok && pass != ""
	}
	return "", false
}

// Status is the HTTP status of an error kind: the one place where a kind
// becomes a status.
func Status(k errs.Kind) int {
	switch k {
	case errs.Invalid:
		return http.StatusBadRequest
	case errs.Unauthenticated:
		return http.StatusUnauthorized
	case errs.Forbidden:
		return http.StatusForbidden
	case errs.NotFound:
		return http.StatusNotFound
	case errs.Conflict:
		return http.StatusConflict
	case errs.TooLarge:
		return http.StatusRequestEntityTooLarge
	case errs.RateLimited:
		return http.StatusTooManyRequests
	case errs.Unavailable:
		return http.StatusServiceUnavailable
	case errs.StorageFull:
		return http.StatusInsufficientStorage
	case errs.NotImplemented:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

// Problem is err as the coded error a client sees: errors that carry no
// *errs.Error are internal, so the user sees a generic message and the
// details go to the log.
func Problem(log *slog.Logger, err error) *errs.Error {
	if e, ok := errs.As(err); ok {
		return e
	}
	if log != nil {
		log.Error("internal error", "err", err)
	}
	return errs.E(errs.Internal, "internal error; see the server log")
}

// WriteError turns err into a status and a JSON body {"error": {code, message}}.
func WriteError(w http.ResponseWriter, log *slog.Logger, err error) {
	e := Problem(log, err)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter.Seconds())+1))
	}
	WriteJSON(w, Status(e.Kind), map[string]any{"error": map[string]string{"code": e.Code, "message": e.Message}})
}

// ReadJSON decodes a JSON body of at most max bytes into v, with errors a
// person can act on.
func ReadJSON(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return TooLarge(max)
	} else if err != nil {
		return errs.New(errs.Invalid, "invalid_json", "cannot read request body: %v", err)
	}
	return DecodeJSON(data, v)
}

// DecodeJSON decodes a JSON request body into v, with errors a person can
// act on. Text that is not valid Unicode (invalid UTF-8, lone surrogates)
// is refused: decoding would silently turn it into U+FFFD.
func DecodeJSON(data []byte, v any) error {
	if err := events.CheckJSONText(data); err != nil {
		return errs.New(errs.Invalid, "invalid_utf8", "%v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return errs.New(errs.Invalid, "invalid_json", "request body is empty; expected a JSON object")
		case errors.As(err, &se):
			return errs.New(errs.Invalid, "invalid_json", "request body is not valid JSON (at byte %d): %v", se.Offset, err)
		case errors.As(err, &te):
			return errs.New(errs.Invalid, "invalid_json", "field %q must be %s, not a JSON %s", te.Field, te.Type, te.Value)
		default:
			return errs.New(errs.Invalid, "invalid_json", "cannot read request body: %v", err)
		}
	}
	if dec.More() {
		return errs.New(errs.Invalid, "invalid_json", "request body has data after the JSON object")
	}
	return nil
}

// TooLarge is the error of a body over max bytes.
func TooLarge(max int64) *errs.Error {
	return errs.E(errs.TooLarge, "request body is larger than the %d-byte limit; send smaller batches", max)
}

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteRaw writes an already encoded JSON document.
func WriteRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
	_, _ = w.Write([]byte("\n"))
}
