package wandb

import (
	"math"
	"testing"
)

func TestParseLineNonFinite(t *testing.T) {
	m, err := parseLine(`{"a":NaN,"b":Infinity,"c":-Infinity,"d":"NaN and Infinity in text","e":[NaN],"f":{"g":1.5e+09},"_step":3,"h":true,"i":null}`)
	if err != nil {
		t.Fatal(err)
	}
	vals, skipped := metrics(m)
	if len(skipped) != 0 {
		t.Errorf("skipped %v", skipped)
	}
	if !math.IsNaN(float64(vals["a"])) || !math.IsInf(float64(vals["b"]), 1) || !math.IsInf(float64(vals["c"]), -1) {
		t.Errorf("non-finite values: %v", vals)
	}
	if vals["f/g"] != 1.5e9 || vals["h"] != 1 {
		t.Errorf("nested or boolean values: %v", vals)
	}
	for _, k := range []string{"d", "e", "i", "_step"} {
		if _, ok := vals[k]; ok {
			t.Errorf("%s is not a metric: %v", k, vals)
		}
	}
	if s, ok := intField(m, "_step"); !ok || s != 3 {
		t.Errorf("_step = %d %v", s, ok)
	}
	if _, err := parseLine(`not json`); err == nil {
		t.Error("garbage parsed")
	}
	// Media objects are not metrics.
	m, _ = parseLine(`{"img":{"_type":"image-file","width":32,"height":32},"loss":1}`)
	if vals, _ := metrics(m); len(vals) != 1 {
		t.Errorf("media flattened into metrics: %v", vals)
	}
}

func TestSplitConfig(t *testing.T) {
	for _, tc := range []struct{ name, in, cfg, sdk string }{
		{"python wrapped", `{"lr":{"value":0.01},"opt":{"value":{"name":"adam"}},"_wandb":{"value":{"t":{"1":[1]}}}}`, `{"lr":0.01,"opt":{"name":"adam"}}`, `{"t":{"1":[1]}}`},
		{"older python with desc", `{"lr":{"desc":null,"value":0.01}}`, `{"lr":0.01}`, ``},
		{"javascript plain", `{"lr":0.01,"layers":[64,32],"opt":{"name":"adam"}}`, `{"layers":[64,32],"lr":0.01,"opt":{"name":"adam"}}`, ``},
		{"plain with a value key", `{"opt":{"value":1,"other":2}}`, `{"opt":{"value":1,"other":2}}`, ``},
		{"non-finite", `{"x":{"value":NaN}}`, `{"x":"NaN"}`, ``},
		{"empty", `{}`, ``, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, sdk, err := splitConfig(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(cfg) != tc.cfg || string(sdk) != tc.sdk {
				t.Errorf("got %s / %s, want %s / %s", cfg, sdk, tc.cfg, tc.sdk)
			}
		})
	}
	if _, _, err := splitConfig(`[1]`); err == nil {
		t.Error("a list is not a config")
	}
	if got := wrapConfig([]byte(`{"lr":0.01}`), []byte(`{"t":{}}`)); got != `{"_wandb":{"value":{"t":{}}},"lr":{"value":0.01}}` {
		t.Errorf("wrapConfig = %s", got)
	}
}
