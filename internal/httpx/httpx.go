// Package httpx holds the HTTP conventions shared by Logbook's APIs: how a
// caller's API key is read, how JSON bodies are read within limits, and how
// errors become statuses and JSON bodies (in exactly one place).
package httpx

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
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

// Error is an error with an HTTP status and a stable code.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// StatusCoder is implemented by errors that know their HTTP status and code.
type StatusCoder interface {
	error
	HTTPStatus() (int, string)
}

// ReadJSON decodes a JSON body of at most max bytes into v, with errors a
// person can act on.
func ReadJSON(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	body := http.MaxBytesReader(w, r.Body, max)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return Errorf(http.StatusRequestEntityTooLarge, "too_large", "request body is larger than the %d-byte limit; send smaller batches", max)
		case errors.Is(err, io.EOF):
			return Errorf(http.StatusBadRequest, "invalid_json", "request body is empty; expected a JSON object")
		case errors.As(err, &se):
			return Errorf(http.StatusBadRequest, "invalid_json", "request body is not valid JSON (at byte %d): %v", se.Offset, err)
		case errors.As(err, &te):
			return Errorf(http.StatusBadRequest, "invalid_json", "field %q must be %s, not a JSON %s", te.Field, te.Type, te.Value)
		default:
			return Errorf(http.StatusBadRequest, "invalid_json", "cannot read request body: %v", err)
		}
	}
	if dec.More() {
		return Errorf(http.StatusBadRequest, "invalid_json", "request body has data after the JSON object")
	}
	return nil
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

// WriteError turns err into a status and a JSON body {"error": {code, message}}.
// Errors that do not say their status are internal: the user sees a generic
// message and the details go to the log.
func WriteError(w http.ResponseWriter, log *slog.Logger, err error) {
	var he *Error
	var sc StatusCoder
	switch {
	case errors.As(err, &he):
	case errors.As(err, &sc):
		st, code := sc.HTTPStatus()
		he = &Error{Status: st, Code: code, Message: sc.Error()}
	default:
		if log != nil {
			log.Error("internal error", "err", err)
		}
		he = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error; see the server log"}
	}
	WriteJSON(w, he.Status, map[string]any{"error": he})
}
