package events

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestUpcastCorpus decodes the events of older versions kept in
// testdata/v<n>/<type>.json (never rewritten: they are what old logs hold)
// and checks that they come out in the current shape.
func TestUpcastCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "v*", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus of old event versions: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cases []struct {
			Note  string          `json:"note"`
			Event json.RawMessage `json:"event"`
			Want  json.RawMessage `json:"want"`
		}
		if err := json.Unmarshal(data, &cases); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		typ := Type(strings.TrimSuffix(filepath.Base(f), ".json"))
		for _, c := range cases {
			e, err := Decode(c.Event)
			if err != nil {
				t.Errorf("%s (%s): %v", f, c.Note, err)
				continue
			}
			if e.Type != typ || e.Version != CurrentVersion(typ) {
				t.Errorf("%s (%s): decoded %s v%d, want %s v%d", f, c.Note, e.Type, e.Version, typ, CurrentVersion(typ))
			}
			want, err := registry[typ].decode(c.Want)
			if err != nil {
				t.Fatalf("%s: want: %v", f, err)
			}
			if !reflect.DeepEqual(e.Payload, want) {
				t.Errorf("%s (%s): upcast to %#v, want %#v", f, c.Note, e.Payload, want)
			}
		}
	}
}

// TestInviteRevokedV2 pins the upcaster's typed result.
func TestInviteRevokedV2(t *testing.T) {
	e, err := Decode([]byte(`{"id":"x","type":"invite_revoked","v":1,"entity":"a","project":"p","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"email":"Dave@Example.com"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.Payload, (InviteRevokedV2{Email: "dave@example.com"}); got != want {
		t.Fatalf("got %#v, want %#v", got, want)
	}
	if e.Version != 2 {
		t.Fatalf("version %d, want 2", e.Version)
	}
}
