package wandb

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/logbook/logbook/events"
)

// envelopeSeeds are file_stream bodies: the shapes wandb-core sends, and
// what must be left to encoding/json.
var envelopeSeeds = []struct {
	body string
	fast bool // the fast path takes it
}{
	{`{}`, true},
	{` { "files" : { } } `, true},
	{`{"files":{"wandb-history.jsonl":{"offset":3,"content":["{\"loss\":0.5,\"_step\":3}","{\"_step\":4}"]}}}`, true},
	{`{"files":{"output.log":{"offset":0,"content":["a\tb \u003cc\u003e \"q\" \\ \/ \b\f\n\r","é \ud83d\ude00 \ud83d"]}},"complete":true,"exitcode":0}`, true},
	{`{"files":{"wandb-summary.json":{"offset":0,"content":["{\"x\":1}"]},"wandb-events.jsonl":{"content":[],"offset":7}},"uploaded":["a.txt"],"preempting":true,"exitcode":null}`, true},
	{`{"exitcode":-3,"complete":false,"uploaded":[]}`, true},
	{`{"files":{"a":{}}}`, true},
	{`{"Files":{}}`, false},                            // another case
	{`{"files":{},"files":{"a":{"offset":1}}}`, false}, // a key twice
	{`{"files":{"a":{"offset":1},"a":{"content":[]}}}`, false},
	{`{"files":{"a":{"offset":1,"offset":2}}}`, false},
	{`{"files":{"a":{"offset":1.0}}}`, false}, // not an integer
	{`{"files":{"a":{"offset":01}}}`, false},  // not JSON
	{`{"files":{"a":{"offset":99999999999999999999}}}`, false},
	{`{"files":{"a":{"content":null,"offset":null}}}`, true},
	{`{"files":null,"uploaded":null,"preempting":null,"complete":null,"exitcode":null}`, true},
	{`{"files":{"a":null}}`, false},
	{`{"files":{"a":{"content":null,"content":[]}}}`, false},
	{`{"dropped":1}`, false},
	{`{"dropped":null}`, false}, // unknown key
	{`{"files":{"a":{"content":["\x"]}}}`, false},
	{`{"files":{"a":{"content":["\u12"]}}}`, false},
	{"{\"files\":{\"a\":{\"content\":[\"\t\"]}}}", false}, // a control character
	{`{"complete":true}x`, false},
	{`{"complete":true,}`, false},
	{``, false},
	{`null`, false},
}

// TestEnvelopeAgreesWithJSON: the fast path takes wandb-core's shapes and
// reads them as json.Unmarshal does.
func TestEnvelopeAgreesWithJSON(t *testing.T) {
	for _, c := range envelopeSeeds {
		_, ok := parseEnvelope([]byte(c.body))
		if ok != c.fast {
			t.Errorf("%s: fast path %v, want %v", c.body, ok, c.fast)
		}
		checkEnvelope(t, []byte(c.body))
	}
}

// FuzzEnvelope: whatever the fast path takes, json.Unmarshal reads alike.
func FuzzEnvelope(f *testing.F) {
	for _, c := range envelopeSeeds {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if events.CheckJSONText(data) != nil {
			return // refused before parsing
		}
		checkEnvelope(t, data)
	})
}

func checkEnvelope(t *testing.T, data []byte) {
	t.Helper()
	got, ok := parseEnvelope(data)
	if !ok {
		return
	}
	var want fileStreamBody
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("%q: fast path took what json refuses: %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: fast path read %+v, json %+v", data, got, want)
	}
}

// BenchmarkEnvelope reads a request of 1,000 history lines of 20 metrics,
// as wandb-core sends it: on the fast path and with encoding/json.
func BenchmarkEnvelope(b *testing.B) {
	var lines []string
	for i := range 1000 {
		line := fmt.Sprintf(`{"_step":%d,"_runtime":%g,"_timestamp":1764547200.%06d`, i, float64(i)*0.01, i)
		for k := range 20 {
			line += fmt.Sprintf(`,"train/metric_%d":%v`, k, 1/(1+float64(i)*1e-4)+float64(k)*0.0137)
		}
		lines = append(lines, line+"}")
	}
	data, err := json.Marshal(fileStreamBody{Files: map[string]fileChunk{historyFile: {Offset: 0, Content: lines}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, ok := parseEnvelope(data); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var body fileStreamBody
			if err := json.Unmarshal(data, &body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
