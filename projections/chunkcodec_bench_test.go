package projections

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/klauspost/compress/snappy"

	"github.com/logbook/logbook/events"
)

// Bytes per point and decode speed of history chunks, against the
// encoding of projection version 3 (oldEncodeChunk: 24 bytes a point) in
// the same run. Sizes are of the chunk bytes and of the same bytes through
// Snappy, which Badger applies to its 32 KiB blocks.
//
//	go test ./projections -run '^$' -bench 'Chunk' -benchtime 20x

// sizeSeries generates the series the sizes are measured on.
func sizeSeries() map[string]func(*rand.Rand, int) []Point {
	const t0 = 1795779452.902
	series := func(dt, jitter float64, value func(i int, rng *rand.Rand) float64) func(*rand.Rand, int) []Point {
		return func(rng *rand.Rand, n int) []Point {
			pts := make([]Point, n)
			t := t0
			for i := range pts {
				pts[i] = Point{Step: int64(i), Time: t, Value: events.Value(value(i, rng))}
				t += dt + jitter*rng.NormFloat64()
				t = math.Round(t*1e9) / 1e9 // the Go client's time: UnixNano / 1e9
			}
			return pts
		}
	}
	loss := func(i int, rng *rand.Rand) float64 {
		return 2.3*math.Exp(-float64(i)/4000) + 0.2 + 0.03*rng.NormFloat64()
	}
	return map[string]func(*rand.Rand, int) []Point{
		// cmd/loadgen client mode: 1/(1+step/10^4) + k*0.0137, logged as
		// fast as the client goes.
		"loadgen": series(40e-6, 10e-6, func(i int, _ *rand.Rand) float64 { return 1/(1+float64(i)*1e-4) + 3*0.0137 }),
		// A training loss from a float32 tensor (.item()), a step every
		// 0.3 s with 5 ms of jitter.
		"loss_f32": series(0.3, 5e-3, func(i int, rng *rand.Rand) float64 { return float64(float32(loss(i, rng))) }),
		// The same in full float64 precision.
		"loss_f64": series(0.3, 5e-3, loss),
		// A cosine learning-rate schedule, logged every step.
		"lr_cosine": series(0.3, 5e-3, func(i int, _ *rand.Rand) float64 { return 1e-3 * 0.5 * (1 + math.Cos(math.Pi*float64(i)/1e6)) }),
		// An epoch counter: the same integer for 1,000 steps.
		"epoch": series(0.3, 5e-3, func(i int, _ *rand.Rand) float64 { return float64(i / 1000) }),
		// Uniform random float64 (the projections benchmarks' values).
		"random": series(0.01, 0, func(_ int, rng *rand.Rand) float64 { return rng.Float64() }),
	}
}

// oldEncodeChunk is projection version 3's chunk: n, block min/max, then
// (step, time, value) as 24 big-endian bytes a point.
func oldEncodeChunk(pts []Point) []byte {
	n := len(pts)
	nb := (n + BlockPoints - 1) / BlockPoints
	b := make([]byte, 4+16*nb, 4+16*nb+24*n)
	binary.BigEndian.PutUint32(b, uint32(n))
	for blk := 0; blk < nb; blk++ {
		lo, hi := math.NaN(), math.NaN()
		for _, p := range pts[blk*BlockPoints : min(n, (blk+1)*BlockPoints)] {
			lo, hi = minMax(lo, hi, float64(p.Value))
		}
		binary.BigEndian.PutUint64(b[4+blk*16:], math.Float64bits(lo))
		binary.BigEndian.PutUint64(b[4+blk*16+8:], math.Float64bits(hi))
	}
	for _, p := range pts {
		b = binary.BigEndian.AppendUint64(b, uint64(p.Step))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(p.Time))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(float64(p.Value)))
	}
	return b
}

// oldDecodeChunk reads an old chunk's points into dst (what its readers did
// point by point).
func oldDecodeChunk(b []byte, dst []Point) []Point {
	n := int(binary.BigEndian.Uint32(b))
	pts := b[4+16*((n+BlockPoints-1)/BlockPoints):]
	for i := 0; i < n; i++ {
		r := pts[i*24:]
		dst = append(dst, Point{Step: int64(binary.BigEndian.Uint64(r)), Time: math.Float64frombits(binary.BigEndian.Uint64(r[8:])),
			Value: events.Value(math.Float64frombits(binary.BigEndian.Uint64(r[16:])))})
	}
	return dst
}

func chunksOf(pts []Point, enc func([]Point) []byte) [][]byte {
	var out [][]byte
	for len(pts) > 0 {
		n := min(ChunkPoints, len(pts))
		out = append(out, enc(pts[:n]))
		pts = pts[n:]
	}
	return out
}

// Snappy over 32 KiB of chunks at a time, as Badger's table blocks.
func sizes(chunks [][]byte) (raw, snapped int) {
	var block []byte
	for _, c := range chunks {
		raw += len(c)
		block = append(block, c...)
		if len(block) >= 32<<10 {
			snapped += len(snappy.Encode(nil, block))
			block = block[:0]
		}
	}
	if len(block) > 0 {
		snapped += len(snappy.Encode(nil, block))
	}
	return raw, snapped
}

func BenchmarkChunkBytes(b *testing.B) {
	const n = 100 * ChunkPoints
	gens := sizeSeries()
	names := make([]string, 0, len(gens))
	for name := range gens {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pts := gens[name](rand.New(rand.NewPCG(1, 1)), n)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				chunksOf(pts, encodeChunk)
			}
			newRaw, newSnap := sizes(chunksOf(pts, encodeChunk))
			oldRaw, oldSnap := sizes(chunksOf(pts, oldEncodeChunk))
			b.ReportMetric(float64(newRaw)/n, "B/pt")
			b.ReportMetric(float64(newSnap)/n, "snappy-B/pt")
			b.ReportMetric(float64(oldRaw)/n, "v3-B/pt")
			b.ReportMetric(float64(oldSnap)/n, "v3-snappy-B/pt")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/pt-encode")
		})
	}
}

// BenchmarkChunkDecode: every point of 100 chunks into a reused buffer.
func BenchmarkChunkDecode(b *testing.B) {
	pts := sizeSeries()["loss_f32"](rand.New(rand.NewPCG(1, 1)), 100*ChunkPoints)
	for _, enc := range []string{"v4", "v3"} {
		b.Run(enc, func(b *testing.B) {
			var chunks [][]byte
			if enc == "v4" {
				chunks = chunksOf(pts, encodeChunk)
			} else {
				chunks = chunksOf(pts, oldEncodeChunk)
			}
			buf := make([]Point, 0, ChunkPoints)
			var c chunk
			for b.Loop() {
				for _, ch := range chunks {
					if enc == "v3" {
						buf = oldDecodeChunk(ch, buf[:0])
						continue
					}
					if err := c.parse(ch); err != nil {
						b.Fatal(err)
					}
					var err error
					if buf, err = c.points(math.MinInt64, buf[:0]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(pts)), "ns/pt")
		})
	}
}
