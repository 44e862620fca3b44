package projections

import (
	"encoding/binary"
	"errors"
	"math"
	"sort"

	"github.com/logbook/logbook/events"
)

// History chunks. A metric's history is stored in chunks of up to
// ChunkPoints points, keyed by the step of their first point. The fold fills
// the last chunk before it starts a new one, whatever the batch sizes, so
// every chunk but the last holds exactly ChunkPoints points and the layout
// depends only on the points (a replay writes the same keys and bytes).
//
// A chunk is a header followed by its blocks, runs of BlockPoints points
// (the last may be shorter) each compressed on its own, so a reader decodes
// one block without the ones before it and a downsample takes the min and
// max of whole blocks from the header without decoding them:
//
//	n          uvarint         number of points
//	per block  min, max        float64 big endian each (NaN ignored; NaN if
//	                           the block has no number)
//	           first step      varint: block 0 absolute, later blocks minus
//	                           the previous block's last step
//	           last - first    uvarint
//	           size            uvarint: bytes of the block's data
//	data       the blocks' bit streams, one after the other
//
// A block's data is described in blockcodec.go.
const (
	ChunkPoints = 1024
	BlockPoints = 64
	maxBlocks   = ChunkPoints / BlockPoints
)

// blockInfo is a block's header entry.
type blockInfo struct {
	min, max    float64
	first, last int64
	start, end  int // byte range of its data in chunk.data
	n           int // points
}

// chunk is a parsed chunk: its block headers and the blocks' data (not
// copied: valid as long as the bytes it was parsed from).
type chunk struct {
	n      int
	nb     int
	blocks [maxBlocks]blockInfo
	data   []byte
}

var errChunk = errors.New("history chunk is corrupt")

// parse reads a chunk's header.
func (c *chunk) parse(b []byte) error {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > ChunkPoints {
		return errChunk
	}
	b = b[k:]
	c.n, c.nb = int(n), (int(n)+BlockPoints-1)/BlockPoints
	off := 0
	var prev int64
	for i := 0; i < c.nb; i++ {
		blk := &c.blocks[i]
		if len(b) < 16 {
			return errChunk
		}
		blk.min = math.Float64frombits(binary.BigEndian.Uint64(b))
		blk.max = math.Float64frombits(binary.BigEndian.Uint64(b[8:]))
		b = b[16:]
		first, k1 := binary.Varint(b)
		if k1 <= 0 {
			return errChunk
		}
		span, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 {
			return errChunk
		}
		size, k3 := binary.Uvarint(b[k1+k2:])
		if k3 <= 0 || size > math.MaxInt32 {
			return errChunk
		}
		b = b[k1+k2+k3:]
		if i > 0 {
			first += prev
		}
		blk.first, blk.last = first, first+int64(span)
		blk.start, blk.end = off, off+int(size)
		blk.n = min(BlockPoints, c.n-i*BlockPoints)
		off, prev = blk.end, blk.last
	}
	if len(b) != off {
		return errChunk
	}
	c.data = b
	return nil
}

// block appends the points of block i to dst.
func (c *chunk) block(i int, dst []Point) ([]Point, error) {
	blk := &c.blocks[i]
	var cols blockColumns
	if !cols.decode(c.data[blk.start:blk.end], blk.n, blk.first) || int64(cols.x[colStep][blk.n-1]) != blk.last {
		return dst, errChunk
	}
	for k := 0; k < blk.n; k++ {
		dst = append(dst, Point{Step: int64(cols.x[colStep][k]), Time: math.Float64frombits(cols.x[colTime][k]), Value: valueOf(cols.x[colValue][k])})
	}
	return dst, nil
}

// points appends the chunk's points with steps >= from to dst, decoding
// only the blocks that hold such steps.
func (c *chunk) points(from int64, dst []Point) ([]Point, error) {
	i := sort.Search(c.nb, func(i int) bool { return c.blocks[i].last >= from })
	if i == c.nb {
		return dst, nil
	}
	base := len(dst)
	dst, err := c.block(i, dst)
	if err != nil {
		return dst, err
	}
	// Drop the first block's points before from.
	skip := searchPoints(dst[base:], from)
	dst = append(dst[:base], dst[base+skip:]...)
	for i++; i < c.nb; i++ {
		if dst, err = c.block(i, dst); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

func valueOf(bits uint64) events.Value { return events.Value(math.Float64frombits(bits)) }

// searchPoints returns the index of the first point with a step >= step.
func searchPoints(pts []Point, step int64) int {
	return sort.Search(len(pts), func(i int) bool { return pts[i].Step >= step })
}

// encodeChunk encodes points (steps increasing) as a chunk.
func encodeChunk(pts []Point) []byte {
	var e chunkEncoder
	e.add(pts)
	return e.bytes()
}

// chunkEncoder builds a chunk block by block. Blocks are encoded from
// their points alone, so a chunk extended with more points keeps its whole
// blocks' bytes (see extend).
type chunkEncoder struct {
	n      int
	blocks []blockInfo
	data   []byte
}

// extend starts an encoder from the first keep points of a parsed chunk:
// its whole blocks are kept as they are and the points of a last partial
// block decoded into scratch, which is returned (to be added first).
func (e *chunkEncoder) extend(c *chunk, keep int, scratch []Point) ([]Point, error) {
	keep = min(keep, c.n)
	whole := keep / BlockPoints
	e.n = whole * BlockPoints
	e.blocks = append(e.blocks[:0], c.blocks[:whole]...)
	e.data = e.data[:0]
	if whole > 0 {
		e.data = append(e.data, c.data[:c.blocks[whole-1].end]...)
	}
	scratch = scratch[:0]
	if keep%BlockPoints == 0 {
		return scratch, nil
	}
	scratch, err := c.block(whole, scratch)
	if err != nil {
		return nil, err
	}
	return scratch[:keep%BlockPoints], nil
}

// add encodes points after the encoder's last block (which must be whole).
func (e *chunkEncoder) add(pts []Point) {
	for len(pts) > 0 {
		take := min(BlockPoints, len(pts))
		e.block(pts[:take])
		pts = pts[take:]
	}
}

// block encodes one block.
func (e *chunkEncoder) block(pts []Point) {
	blk := blockInfo{min: math.NaN(), max: math.NaN(), first: pts[0].Step, last: pts[len(pts)-1].Step, n: len(pts)}
	var cols blockColumns
	for k, p := range pts {
		blk.min, blk.max = minMax(blk.min, blk.max, float64(p.Value))
		cols.x[colStep][k] = uint64(p.Step)
		cols.x[colTime][k] = math.Float64bits(p.Time)
		cols.x[colValue][k] = math.Float64bits(float64(p.Value))
	}
	blk.start = len(e.data)
	e.data = cols.encode(e.data, len(pts))
	blk.end = len(e.data)
	e.blocks = append(e.blocks, blk)
	e.n += len(pts)
}

// bytes returns the encoded chunk.
func (e *chunkEncoder) bytes() []byte {
	out := make([]byte, 0, 3+len(e.blocks)*22+len(e.data))
	out = binary.AppendUvarint(out, uint64(e.n))
	var prev int64
	for i, blk := range e.blocks {
		out = binary.BigEndian.AppendUint64(out, math.Float64bits(blk.min))
		out = binary.BigEndian.AppendUint64(out, math.Float64bits(blk.max))
		first := blk.first
		if i > 0 {
			first -= prev
		}
		out = binary.AppendVarint(out, first)
		out = binary.AppendUvarint(out, uint64(blk.last-blk.first))
		out = binary.AppendUvarint(out, uint64(blk.end-blk.start))
		prev = blk.last
	}
	return append(out, e.data...)
}

// minMax folds v into a running min and max that ignore NaN (NaN until a
// number is seen).
func minMax(lo, hi, v float64) (float64, float64) {
	if math.IsNaN(v) {
		return lo, hi
	}
	if math.IsNaN(lo) || v < lo {
		lo = v
	}
	if math.IsNaN(hi) || v > hi {
		hi = v
	}
	return lo, hi
}
