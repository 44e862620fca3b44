package metrics

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every Logbook metric the Grafana dashboard (deploy/grafana/logbook.json)
// queries exists, and every metric we export is on the dashboard.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	m := New("test")
	m.HTTPRequests.WithLabelValues("/x", "GET", "200").Inc()
	m.HTTPDuration.WithLabelValues("/x", "GET", "200").Observe(0.01)
	m.RateLimited.Inc()
	m.ObserveProposal("metrics_logged", "accepted", "", 3)
	m.SetProbes(Probes{
		Streams: func(context.Context) ([]Stream, error) {
			return []Stream{{Name: "LB_EVENTS", Messages: 1, Bytes: 2}}, nil
		},
		Decider:   func(context.Context) (Decider, error) { return Decider{InboxDepth: 1}, nil },
		Projector: func(context.Context) (Projector, error) { return Projector{Rebuilding: true}, nil },
	})
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "logbook_") && f.GetName() != "logbook_probe_errors_total" {
			exported[f.GetName()] = true
		}
	}
	b, err := os.ReadFile("../deploy/grafana/logbook.json")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, n := range regexp.MustCompile(`logbook_[a-z_]+`).FindAllString(string(b), -1) {
		used[strings.TrimSuffix(n, "_bucket")] = true
	}
	for n := range used {
		if !exported[n] {
			t.Errorf("the dashboard queries %s, which Logbook does not export", n)
		}
	}
	for n := range exported {
		if !used[n] {
			t.Errorf("%s is not on the dashboard", n)
		}
	}
}
