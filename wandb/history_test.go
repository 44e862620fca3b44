package wandb

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/logbook/logbook/events"
)

var lineKeys = []string{"loss", "acc", "train/loss", "a.b", "_step", "_timestamp", "_runtime", "_wandb", "x y", "é", "_", "\t", `q\"`, strings.Repeat("k", 300)}

var lineValues = []string{"0", "-1", "1.5", "1e-7", "2.5E+3", "1e400", "-1e400", "NaN", "Infinity", "-Infinity", "true", "false",
	"null", `"text"`, `"NaN"`, `"a\"b"`, `{"_type":"image-file","w":1}`, `{"inner":2}`, "[1,NaN]", "3", "7.0", "7.5", "4611686018427387904"}

func randomLine(rng *rand.Rand) string {
	var b strings.Builder
	b.WriteString("{")
	n := rng.IntN(6)
	for i := range n {
		if i > 0 {
			b.WriteString([]string{",", ", "}[rng.IntN(2)])
		}
		fmt.Fprintf(&b, "%q:%s", lineKeys[rng.IntN(len(lineKeys))], lineValues[rng.IntN(len(lineValues))])
	}
	if rng.IntN(2) == 0 {
		fmt.Fprintf(&b, `,"_timestamp":%d.25`, 1795779452+rng.IntN(1000))
	}
	b.WriteString("}")
	switch rng.IntN(20) {
	case 0:
		return "not json"
	case 1:
		return b.String() + " x"
	}
	return b.String()
}

// TestHistoryFastPath: a history line read on the fast path gives the row
// the lenient parser gives (or is left to it).
func TestHistoryFastPath(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	rng := rand.New(rand.NewPCG(21, 21))
	fast := 0
	h := historyLine{valid: map[string]bool{}}
	for i := range 20000 {
		line := randomLine(rng)
		if h.read(line) {
			fast++
		}
		var a, b events.Builder
		sa, oka := s.historyRow(&h, &a, line, 10, 5, "r")
		sb, okb := s.lenientRow(&b, line, 10, 5, "r")
		if sa != sb || oka != okb {
			t.Fatalf("case %d %s: fast (%d %v), lenient (%d %v)", i, line, sa, oka, sb, okb)
		}
		ra, _ := a.Build()
		rb, _ := b.Build()
		x, y := ra.Rows(), rb.Rows()
		for j := range x {
			if math.Abs(x[j].Time-y[j].Time) < 5 { // now, read twice
				x[j].Time = y[j].Time
			}
		}
		if fmt.Sprint(x) != fmt.Sprint(y) || !reflect.DeepEqual(ra.Keys(), rb.Keys()) {
			t.Fatalf("case %d %s:\nfast    %v\nlenient %v", i, line, x, y)
		}
	}
	if fast < 5000 {
		t.Fatalf("only %d of 20000 lines on the fast path", fast)
	}
}
