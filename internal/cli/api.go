package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// api is a running Logbook's HTTP API, as LOGBOOK_URL and LOGBOOK_API_KEY
// name it.
type api struct{ base, key string }

func newAPI() (api, error) {
	base := os.Getenv("LOGBOOK_URL")
	if base == "" {
		base = "http://127.0.0.1:8080"
	}
	key := os.Getenv("LOGBOOK_API_KEY")
	if key == "" {
		return api{}, UsageError{"set LOGBOOK_API_KEY to your API key (and LOGBOOK_URL if Logbook is not at http://127.0.0.1:8080)"}
	}
	return api{strings.TrimRight(base, "/"), key}, nil
}

// response is an answer of the API: its body and headers.
type response struct {
	body   []byte
	header http.Header
}

// do sends a request and returns the answer; a status of 300 or more is an
// error carrying the API's code and message.
func (a api) do(ctx context.Context, method, path string, body any) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := a.open(ctx, method, path, body)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{b, resp.Header}, err
}

// open sends a request and returns the open answer (streams read it as it
// comes).
func (a api) open(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (is Logbook running at %s? set LOGBOOK_URL)", method, path, err, a.base)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			return nil, fmt.Errorf("%s (%s, %s)", e.Error.Message, e.Error.Code, resp.Status)
		}
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return resp, nil
}

// view says how a command shows an answer: as a table with these columns
// (a list) or key/value rows (an object), and which field -q prints.
type view struct {
	columns []column
	quiet   string
	// note, when set, is printed after a table (to stderr): a hint such as
	// the next page's cursor.
	note string
}

type column struct {
	title string
	get   func(map[string]any) string
}

// field is a column showing a top-level field.
func field(title, name string) column {
	return column{strings.ToUpper(title), func(m map[string]any) string { return text(m[name]) }}
}

// show prints an answer as e asks: indented JSON, the quiet field, or a
// table.
func show(e *Env, body []byte, v view) error {
	var data any
	if err := json.Unmarshal(body, &data); err != nil {
		_, err := e.Out.Write(body)
		return err
	}
	if e.Format == "json" {
		b, err := json.MarshalIndent(data, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.Out, "%s\n", b)
		return err
	}
	rows := []map[string]any{}
	switch d := data.(type) {
	case []any:
		for _, x := range d {
			if m, ok := x.(map[string]any); ok {
				rows = append(rows, m)
			}
		}
	case map[string]any:
		rows = append(rows, d)
	}
	if e.Quiet {
		for _, r := range rows {
			if v.quiet != "" {
				fmt.Fprintln(e.Out, text(r[v.quiet]))
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.Out, 0, 0, 2, ' ', 0)
	if obj, ok := data.(map[string]any); ok && v.columns == nil {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(tw, "%s:\t%s\n", k, text(obj[k]))
		}
		return tw.Flush()
	}
	titles := make([]string, len(v.columns))
	for i, c := range v.columns {
		titles[i] = c.title
	}
	fmt.Fprintln(tw, strings.Join(titles, "\t"))
	for _, r := range rows {
		cells := make([]string, len(v.columns))
		for i, c := range v.columns {
			cells[i] = c.get(r)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if v.note != "" {
		fmt.Fprintln(e.Err, v.note)
	}
	return nil
}

// text renders a JSON value in one cell.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'g', 6, 64)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		parts := make([]string, len(x))
		for i, y := range x {
			parts[i] = text(y)
		}
		return strings.Join(parts, ",")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + text(x[k])
		}
		return strings.Join(parts, " ")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// when shortens an RFC 3339 time to the second.
func when(title, name string) column {
	return column{strings.ToUpper(title), func(m map[string]any) string {
		s := text(m[name])
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.UTC().Format("2006-01-02 15:04:05")
		}
		return s
	}}
}
