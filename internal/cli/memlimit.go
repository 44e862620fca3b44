package cli

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultMemoryLimit is the soft memory limit of a Logbook process unless
// -memory.limit or GOMEMLIMIT says otherwise. Without a limit Go lets the
// heap grow to twice the live data between collections, and Badger's table
// builders and the batches in flight made the all-in-one's anonymous memory
// 1.5-2 GiB at saturation; with 768 MiB it stays near 0.8 GiB for a little
// more GC work (README, Performance). It is a soft limit: a process whose
// live data needs more keeps running and collects more often.
const DefaultMemoryLimit = "768MiB"

// ServerFlagSet is NewFlagSet with -memory.limit, for the commands that run
// a Logbook process; Parse applies the limit.
func ServerFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := NewFlagSet(name, out)
	AddMemoryLimit(fs)
	return fs
}

// AddMemoryLimit registers -memory.limit on fs; Parse applies it.
func AddMemoryLimit(fs *flag.FlagSet) {
	fs.String("memory.limit", DefaultMemoryLimit, "soft memory limit of this process (Go's GOMEMLIMIT), e.g. 768MiB or 2GiB; 0 or off: none")
}

// applyMemoryLimit sets the process's soft memory limit from fs's
// -memory.limit, if it has one: the value given (on the command line or in
// the environment), else GOMEMLIMIT (which the Go runtime applied itself),
// else the default. "0" or "off" means no limit.
func applyMemoryLimit(fs *flag.FlagSet) error {
	f := fs.Lookup("memory.limit")
	if f == nil {
		return nil
	}
	if f.Value.String() == f.DefValue && os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	n, err := ParseSize(f.Value.String())
	if err != nil {
		return UsageError{Msg: fmt.Sprintf("-memory.limit: %v", err)}
	}
	if n == 0 {
		n = math.MaxInt64 // Go's "no limit"
	}
	debug.SetMemoryLimit(n)
	return nil
}

// ParseSize reads a byte size: a number with an optional unit B, KiB, MiB,
// GiB (or KB, MB, GB as powers of 1000); "off" is 0.
func ParseSize(in string) (int64, error) {
	s := strings.TrimSpace(in)
	if s == "off" || s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (e.g. 768MiB, 2GiB, 0)", in)
	}
	return n * mult, nil
}
