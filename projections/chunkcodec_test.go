package projections

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/logbook/logbook/events"
)

// oddSeries has what a history may hold besides well-behaved numbers:
// NaN with payloads (quiet and signalling, both signs), infinities, -0,
// subnormals, huge step gaps, negative steps, non-finite and zero times.
func oddSeries() []Point {
	odd := []uint64{0x7ff8000000000000, 0x7ff8000000000001, 0xfff8000000000000, 0x7ff0000000000001,
		0x7ff0000000000000, 0xfff0000000000000, 0x8000000000000000, 0, 1, 0x800fffffffffffff, math.Float64bits(math.MaxFloat64)}
	var pts []Point
	step := int64(math.MinInt64 + 1)
	for i := 0; i < 300; i++ {
		v := odd[i%len(odd)]
		t := odd[(i*7)%len(odd)]
		pts = append(pts, Point{Step: step, Time: math.Float64frombits(t), Value: events.Value(math.Float64frombits(v))})
		step += 1 + int64(i%5)<<(i%50) // gaps from 1 to 2^51
	}
	return pts
}

// testSeries are the series the codec tests run on.
func testSeries() map[string][]Point {
	rng := rand.New(rand.NewPCG(7, 7))
	out := map[string][]Point{"odd": oddSeries()}
	for name, gen := range sizeSeries() {
		out[name] = gen(rng, 3000)
	}
	return out
}

func samePoints(t *testing.T, name string, got, want []Point) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d points, want %d", name, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Step != w.Step || math.Float64bits(g.Time) != math.Float64bits(w.Time) ||
			math.Float64bits(float64(g.Value)) != math.Float64bits(float64(w.Value)) {
			t.Fatalf("%s: point %d is %+v (value bits %x), want %+v (value bits %x)", name, i, g,
				math.Float64bits(float64(g.Value)), w, math.Float64bits(float64(w.Value)))
		}
	}
}

// TestChunkRoundTrip: every point, NaN payloads included, decodes to the
// bits it was encoded from, whole chunks, single blocks and from a step.
func TestChunkRoundTrip(t *testing.T) {
	for name, pts := range testSeries() {
		for len(pts) > 0 {
			in := pts[:min(ChunkPoints, len(pts))]
			pts = pts[len(in):]
			var c chunk
			if err := c.parse(encodeChunk(in)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got, err := c.points(math.MinInt64, nil)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			samePoints(t, name, got, in)
			for b := 0; b < c.nb; b++ {
				blk, err := c.block(b, nil)
				if err != nil {
					t.Fatal(err)
				}
				samePoints(t, name+" block", blk, in[b*BlockPoints:min(len(in), (b+1)*BlockPoints)])
				lo, hi := math.NaN(), math.NaN()
				for _, p := range blk {
					lo, hi = minMax(lo, hi, float64(p.Value))
				}
				if math.Float64bits(lo) != math.Float64bits(c.blocks[b].min) || math.Float64bits(hi) != math.Float64bits(c.blocks[b].max) {
					t.Fatalf("%s block %d: summary %v..%v, points %v..%v", name, b, c.blocks[b].min, c.blocks[b].max, lo, hi)
				}
			}
			mid := in[len(in)/3]
			got, err = c.points(mid.Step, nil)
			if err != nil {
				t.Fatal(err)
			}
			samePoints(t, name+" from a step", got, in[len(in)/3:])
		}
	}
}

// TestChunkExtend: a chunk extended from its first keep points (the fold's
// open chunk, maybe with points past the run's count to drop) has the
// bytes of the chunk encoded at once.
func TestChunkExtend(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for name, pts := range testSeries() {
		pts = pts[:min(ChunkPoints, len(pts))]
		for range 50 {
			written := 1 + rng.IntN(len(pts))
			keep := rng.IntN(written + 1)
			if keep == 0 {
				continue
			}
			more := rng.IntN(len(pts) - keep + 1)
			var c chunk
			if err := c.parse(encodeChunk(pts[:written])); err != nil {
				t.Fatal(err)
			}
			var e chunkEncoder
			tail, err := e.extend(&c, keep, nil)
			if err != nil {
				t.Fatal(err)
			}
			e.add(append(tail, pts[keep:keep+more]...))
			if got, want := e.bytes(), encodeChunk(pts[:keep+more]); !bytes.Equal(got, want) {
				t.Fatalf("%s: written %d, kept %d, added %d: extended chunk differs from one encoded at once", name, written, keep, more)
			}
		}
	}
}

// TestChunkCorrupt: damaged chunks give an error (or wrong points), never a
// panic or a hang.
func TestChunkCorrupt(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	good := encodeChunk(testSeries()["loss_f32"][:ChunkPoints])
	for i := 0; i < 2000; i++ {
		b := bytes.Clone(good)
		if i%2 == 0 {
			b = b[:rng.IntN(len(b))]
		} else {
			for range 1 + rng.IntN(4) {
				b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
			}
		}
		var c chunk
		if c.parse(b) == nil {
			_, _ = c.points(math.MinInt64, nil)
		}
	}
	var c chunk
	if err := c.parse(good[:len(good)-1]); err == nil {
		t.Fatal("a truncated chunk parsed")
	}
}

// FuzzChunk: any bytes parse and decode to an error or points, never a
// panic (go test ./projections -run '^$' -fuzz FuzzChunk -fuzztime 30s).
func FuzzChunk(f *testing.F) {
	for _, pts := range testSeries() {
		f.Add(encodeChunk(pts[:min(len(pts), 200)]))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c chunk
		if c.parse(b) != nil {
			return
		}
		pts, err := c.points(math.MinInt64, nil)
		if err == nil && len(pts) != c.n {
			t.Fatalf("%d points decoded from a chunk of %d", len(pts), c.n)
		}
	})
}
