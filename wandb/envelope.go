package wandb

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The file_stream envelope without reflection. encoding/json spent a
// quarter of the server's CPU on file_stream bodies: it validates the
// whole body, then decodes it again and allocates one string per line.
// parseEnvelope reads the shape wandb-core sends,
//
//	{"files":{"wandb-history.jsonl":{"offset":N,"content":["...",...]}},
//	 "uploaded":[...],"preempting":false,"complete":false,"exitcode":null}
//
// in one pass, and unescapes every string into one buffer, so that the
// lines of a request share one allocation. Anything else (unknown or
// repeated keys, keys in another case, nulls where a value is expected,
// invalid JSON) is left to json.Unmarshal, which decides exactly as
// before: the fast path either agrees with it or declines.

// parseEnvelope reads a file_stream body; ok is false when json.Unmarshal
// must decide.
func parseEnvelope(data []byte) (body fileStreamBody, ok bool) {
	e := envScanner{b: data}
	e.text.Grow(len(data)) // unescaped strings are never longer
	seen := map[string]bool{}
	if !e.eat('{') {
		return body, false
	}
	if e.eat('}') {
		return body, e.end()
	}
	for {
		key, ok := e.str()
		if !ok || seen[key] || !e.eat(':') {
			return body, false
		}
		seen[key] = true
		if !e.topField(&body, key) {
			return body, false
		}
		if e.eat(',') {
			continue
		}
		return body, e.eat('}') && e.end()
	}
}

// topField reads the value of a top-level key. A null leaves a value
// unset, as with json.Unmarshal (a key is read once).
func (e *envScanner) topField(body *fileStreamBody, key string) bool {
	if e.word("null") {
		return key == "files" || key == "uploaded" || key == "preempting" || key == "complete" || key == "exitcode"
	}
	ok := false
	switch key {
	case "files":
		body.Files, ok = e.files()
	case "uploaded":
		body.Uploaded, ok = e.strs()
	case "preempting":
		body.Preempting, ok = e.boolean()
	case "complete":
		body.Complete, ok = e.boolean()
	case "exitcode":
		var n int64
		if n, ok = e.integer(); ok {
			code := int(n)
			body.ExitCode = &code
		}
	}
	return ok
}

// files reads the object of files, by name.
func (e *envScanner) files() (map[string]fileChunk, bool) {
	files := map[string]fileChunk{}
	if !e.eat('{') {
		return nil, false
	}
	if e.eat('}') {
		return files, true
	}
	for {
		name, ok := e.str()
		if !ok || !e.eat(':') {
			return nil, false
		}
		if _, dup := files[name]; dup {
			return nil, false
		}
		if files[name], ok = e.chunk(); !ok {
			return nil, false
		}
		if e.eat(',') {
			continue
		}
		return files, e.eat('}')
	}
}

// chunk reads one file's {"offset":N,"content":[...]}.
func (e *envScanner) chunk() (fileChunk, bool) {
	var ch fileChunk
	var hasOffset, hasContent bool
	if !e.eat('{') {
		return ch, false
	}
	if e.eat('}') {
		return ch, true
	}
	for {
		key, ok := e.str()
		if !ok || !e.eat(':') {
			return ch, false
		}
		switch { // a null leaves a value unset, as with json.Unmarshal
		case key == "offset" && !hasOffset:
			hasOffset = true
			if !e.word("null") {
				ch.Offset, ok = e.integer()
			}
		case key == "content" && !hasContent:
			hasContent = true
			if !e.word("null") {
				ch.Content, ok = e.strs()
			}
		default:
			return ch, false
		}
		if !ok {
			return ch, false
		}
		if e.eat(',') {
			continue
		}
		return ch, e.eat('}')
	}
}

// envScanner reads JSON text; strings are unescaped into text, which
// only grows, so the strings cut from it stay valid.
type envScanner struct {
	b    []byte
	i    int
	text strings.Builder
}

func (e *envScanner) ws() {
	for e.i < len(e.b) && (e.b[e.i] == ' ' || e.b[e.i] == '\t' || e.b[e.i] == '\r' || e.b[e.i] == '\n') {
		e.i++
	}
}

func (e *envScanner) eat(c byte) bool {
	e.ws()
	if e.i < len(e.b) && e.b[e.i] == c {
		e.i++
		return true
	}
	return false
}

func (e *envScanner) end() bool {
	e.ws()
	return e.i == len(e.b)
}

// word reads a literal (true, false, null).
func (e *envScanner) word(w string) bool {
	e.ws()
	if len(e.b)-e.i >= len(w) && string(e.b[e.i:e.i+len(w)]) == w {
		e.i += len(w)
		return true
	}
	return false
}

func (e *envScanner) boolean() (bool, bool) {
	switch {
	case e.word("true"):
		return true, true
	case e.word("false"):
		return false, true
	}
	return false, false
}

// integer reads a JSON number that is an integer in int64's range (what
// json.Unmarshal takes into an int64 or an int).
func (e *envScanner) integer() (int64, bool) {
	e.ws()
	start := e.i
	if e.i < len(e.b) && e.b[e.i] == '-' {
		e.i++
	}
	digits := e.i
	for e.i < len(e.b) && e.b[e.i] >= '0' && e.b[e.i] <= '9' {
		e.i++
	}
	n := e.i - digits
	if n == 0 || n > 1 && e.b[digits] == '0' {
		return 0, false
	}
	if e.i < len(e.b) && (e.b[e.i] == '.' || e.b[e.i] == 'e' || e.b[e.i] == 'E') {
		return 0, false
	}
	v, err := strconv.ParseInt(string(e.b[start:e.i]), 10, 64)
	return v, err == nil
}

// strs reads a list of strings.
func (e *envScanner) strs() ([]string, bool) {
	if !e.eat('[') {
		return nil, false
	}
	list := []string{}
	if e.eat(']') {
		return list, true
	}
	for {
		s, ok := e.str()
		if !ok {
			return nil, false
		}
		list = append(list, s)
		if e.eat(',') {
			continue
		}
		return list, e.eat(']')
	}
}

// str reads a string, unescaped as encoding/json does. The body's UTF-8
// has been checked (CheckJSONText) before.
func (e *envScanner) str() (string, bool) {
	if !e.eat('"') {
		return "", false
	}
	start := e.text.Len()
	for e.i < len(e.b) {
		run, i := e.i, e.i
		for i < len(e.b) && plain[e.b[i]] {
			i++
		}
		e.i = i
		e.text.Write(e.b[run:i])
		switch {
		case e.i == len(e.b) || e.b[e.i] < 0x20:
			return "", false
		case e.b[e.i] == '"':
			e.i++
			return e.text.String()[start:], true
		case !e.escape():
			return "", false
		}
	}
	return "", false
}

// plain holds the bytes a JSON string holds as they are.
var plain = func() (p [256]bool) {
	for c := range p {
		p[c] = c >= 0x20 && c != '"' && c != '\\'
	}
	return p
}()

// escape reads the escape at e.i into text.
func (e *envScanner) escape() bool {
	if e.i+1 >= len(e.b) {
		return false
	}
	c := e.b[e.i+1]
	e.i += 2
	switch c {
	case '"', '\\', '/':
		e.text.WriteByte(c)
	case 'b':
		e.text.WriteByte('\b')
	case 'f':
		e.text.WriteByte('\f')
	case 'n':
		e.text.WriteByte('\n')
	case 'r':
		e.text.WriteByte('\r')
	case 't':
		e.text.WriteByte('\t')
	case 'u':
		return e.utf16()
	default:
		return false
	}
	return true
}

// utf16 reads \uXXXX (e.i after the u), a surrogate pair as one
// character, a lone surrogate as U+FFFD, as encoding/json does.
func (e *envScanner) utf16() bool {
	r, ok := hex4(e.b, e.i)
	if !ok {
		return false
	}
	e.i += 4
	if utf16.IsSurrogate(r) {
		lo, ok := rune(0), false
		if e.i+1 < len(e.b) && e.b[e.i] == '\\' && e.b[e.i+1] == 'u' {
			lo, ok = hex4(e.b, e.i+2)
		}
		if d := utf16.DecodeRune(r, lo); ok && d != unicode.ReplacementChar {
			e.i += 6
			r = d
		} else {
			r = unicode.ReplacementChar
		}
	}
	var buf [utf8.UTFMax]byte
	e.text.Write(utf8.AppendRune(buf[:0], r))
	return true
}

// hex4 reads four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
