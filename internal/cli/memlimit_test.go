package cli

import (
	"io"
	"math"
	"os"
	"runtime/debug"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{"768MiB": 768 << 20, "2GiB": 2 << 30, "0": 0, "off": 0, "1000": 1000, "5 MB": 5e6, "12KiB": 12 << 10}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1MiB", "lots", "1.5GiB", "99999999999GiB", "MiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestMemoryLimitFlag(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	parse := func(args ...string) error {
		fs := ServerFlagSet("x", io.Discard)
		return Parse(fs, args, "LBTEST_")
	}
	if err := parse(); err != nil || debug.SetMemoryLimit(-1) != 768<<20 {
		t.Fatalf("default: %v, limit %d", err, debug.SetMemoryLimit(-1))
	}
	if err := parse("-memory.limit", "1GiB"); err != nil || debug.SetMemoryLimit(-1) != 1<<30 {
		t.Fatalf("given: %v, limit %d", err, debug.SetMemoryLimit(-1))
	}
	if err := parse("-memory.limit", "off"); err != nil || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("off: %v, limit %d", err, debug.SetMemoryLimit(-1))
	}
	if err := parse("-memory.limit", "much"); err == nil {
		t.Fatal("a bad size was accepted")
	}
	t.Setenv("LBTEST_MEMORY_LIMIT", "2GiB")
	if err := parse(); err != nil || debug.SetMemoryLimit(-1) != 2<<30 {
		t.Fatalf("LBTEST_MEMORY_LIMIT: %v, limit %d", err, debug.SetMemoryLimit(-1))
	}
	os.Unsetenv("LBTEST_MEMORY_LIMIT")
	// GOMEMLIMIT from the environment wins over the default, not over the flag.
	debug.SetMemoryLimit(123 << 20)
	t.Setenv("GOMEMLIMIT", "123MiB")
	if err := parse(); err != nil || debug.SetMemoryLimit(-1) != 123<<20 {
		t.Fatalf("env: %v, limit %d", err, debug.SetMemoryLimit(-1))
	}
}
