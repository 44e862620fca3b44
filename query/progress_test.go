package query

import (
	"strings"
	"testing"
	"time"

	"github.com/logbook/logbook/errs"
)

// The rate is over the window, not since the start: a first burst (a
// replay's first batch from the server's cache) does not make the rate
// absurd once the window has moved past it.
func TestRateWindow(t *testing.T) {
	w := rateWindow{span: 10 * time.Second}
	t0 := time.Unix(0, 0)
	if r := w.add(t0, 0); r != 0 {
		t.Fatalf("first sample: %v", r)
	}
	if r := w.add(t0.Add(10*time.Millisecond), 4_000_000); r != 0 {
		t.Errorf("rate under a second of samples = %v, want 0 (unknown)", r)
	}
	n := uint64(4_000_000)
	var r float64
	for i := 1; i <= 30; i++ {
		n += 100
		r = w.add(t0.Add(10*time.Millisecond+time.Duration(i)*time.Second), n)
	}
	if r < 99 || r > 101 {
		t.Errorf("steady 100 events/s after a burst: rate %v", r)
	}
	if d := eta(1000, r); d < 9*time.Second || d > 11*time.Second {
		t.Errorf("eta of 1000 events at %v/s = %v", r, d)
	}
	pr := RebuildProgress{Dir: "rm.new", Seq: 50, Total: 100, Rate: 10, ETA: 5}
	if s := pr.String(); !strings.Contains(s, "50/100 events (50.0%), 10 events/s, 5s left") {
		t.Errorf("progress line %q", s)
	}
}

func TestParseRunQueryStates(t *testing.T) {
	q, err := ParseRunQuery("state=running,crashed&state=finished")
	if err != nil || len(q.States) != 3 {
		t.Fatalf("valid states: %v %v", q.States, err)
	}
	_, err = ParseRunQuery("state=broken")
	if e, ok := err.(*errs.Error); !ok || e.Code != "invalid_filter" || !strings.Contains(e.Message, "broken") {
		t.Errorf("state=broken: %v, want invalid_filter naming it", err)
	}
}
