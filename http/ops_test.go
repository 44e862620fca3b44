package http

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/logbook/logbook/metrics"
)

type teapot struct{}

func (teapot) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/things/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(418) })
}

// Requests are counted by route pattern (not path), method and status;
// rate-limit refusals are counted; /readyz answers 503 until every check
// passes, while /healthz answers all along.
func TestOpsCountsRoutesAndReadiness(t *testing.T) {
	m := metrics.New("test")
	var caughtUp atomic.Bool
	ops := &Ops{Metrics: m, Ready: []func(context.Context) error{func(context.Context) error {
		if !caughtUp.Load() {
			return errors.New("catching up")
		}
		return nil
	}}}
	srv := httptest.NewServer(Handler(false, teapot{}, ops))
	defer srv.Close()
	get := func(path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 5; i++ {
		get("/api/v1/things/" + strings.Repeat("x", i+1))
	}
	get("/nowhere")
	if st := get("/readyz"); st != 503 {
		t.Errorf("readyz while not ready: %d", st)
	}
	if st := get("/healthz"); st != 200 {
		t.Errorf("healthz: %d", st)
	}
	caughtUp.Store(true)
	if st := get("/readyz"); st != 200 {
		t.Errorf("readyz when ready: %d", st)
	}
	lim := NewKeyLimiter(0.001, 2)
	lim.OnLimit = m.RateLimited.Inc
	for i := 0; i < 5; i++ {
		_ = lim.Check("k")
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mt := range fams["logbook_http_requests_total"].Metric {
		l := map[string]string{}
		for _, lp := range mt.Label {
			l[lp.GetName()] = lp.GetValue()
		}
		counts[l["method"]+" "+l["route"]+" "+l["status"]] += mt.Counter.GetValue()
	}
	for k, want := range map[string]float64{"GET /api/v1/things/{id} 418": 5, "GET unmatched 404": 1, "GET /readyz 503": 1, "GET /readyz 200": 1, "GET /healthz 200": 1} {
		if counts[k] != want {
			t.Errorf("requests %q = %v, want %v (all: %v)", k, counts[k], want, counts)
		}
	}
	if got := fams["logbook_http_rate_limited_total"].Metric[0].Counter.GetValue(); got != 3 {
		t.Errorf("rate-limited = %v, want 3 (burst 2 of 5)", got)
	}
}
