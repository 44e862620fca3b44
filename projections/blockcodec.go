package projections

import (
	"encoding/binary"
	"math/bits"
)

// A block's bit stream (most significant bit first) holds its points as
// three columns of 64-bit words: steps, times and values, the last two as
// the bits of their float64, so every float64 (NaN payloads included)
// round-trips exactly. It is
//
//	codes    per column: 2 bits of predictor order, 6 bits of Rice k,
//	         6 bits of shift
//	time0    64 bits (the first step is in the chunk header)
//	value0   64 bits
//	steps    n-1 residuals
//	times    n-1 residuals
//	values   n-1 residuals
//
// A column of order 1 to 3 drops the low shift bits, zero in all its words
// (float32 values widened to float64 have 29), and stores each word minus
// its prediction from the words before it, as integers (wrapping): order 1
// predicts the previous word, order 2 continues the last difference, order
// 3 the last difference of differences. Residuals are zigzagged and Rice
// coded with parameter k: q = z>>k in unary (q ones, a zero), then the k
// low bits; a q of riceEscape or more is written as riceEscape ones, 6 bits
// of the length L-1 of z and its L bits. Order 0 (values only) is Gorilla's
// XOR with the previous value (see bitWriter.xor; its k and shift are 0).
//
// The encoder picks each column's order and k that take the fewest bits
// for the block, so the bytes depend only on the points. What they cost:
// steps logged one by one take a bit; times near 2026 differ in the low
// bits only (the float64 spacing there is 0.24 us) and a steady logging
// rate leaves the jitter (order 2); float32 values widened to float64
// (most training metrics: 29 zero low bits) and repeated values suit XOR;
// smooth full-precision curves suit order 2 or 3.
const (
	colStep = iota
	colTime
	colValue
	riceEscape = 24
)

// blockColumns is a block's columns, decoded or to encode.
type blockColumns struct {
	x [3][BlockPoints]uint64
}

// code is how a column is stored.
type code struct {
	order uint // 0: XOR (values only), 1 to 3: predictor order
	k     uint // Rice parameter
	shift uint // low bits dropped (zero in every word)
}

// orders to try per column.
var columnOrders = [3][]uint{colStep: {2, 1}, colTime: {2, 1}, colValue: {0, 2, 1, 3}}

// encode appends the bit stream of the first n points.
func (b *blockColumns) encode(dst []byte, n int) []byte {
	var codes [3]code
	for c := range b.x {
		codes[c] = bestCode(b.x[c][:n], columnOrders[c])
	}
	w := bitWriter{b: dst}
	for _, cd := range codes {
		w.bits(uint64(cd.order), 2)
		w.bits(uint64(cd.k), 6)
		w.bits(uint64(cd.shift), 6)
	}
	w.bits(b.x[colTime][0], 64)
	w.bits(b.x[colValue][0], 64)
	for c, cd := range codes {
		x := b.x[c][:n]
		if cd.order == 0 {
			var lead, trail uint
			for i := 1; i < n; i++ {
				w.xor(x[i]^x[i-1], &lead, &trail)
			}
			continue
		}
		y := shifted(x, cd.shift)
		for i := 1; i < n; i++ {
			w.rice(zigzag(y[i]-predict(y[:n], i, cd.order)), cd.k)
		}
	}
	return w.done()
}

// decode reads the bit stream of n points whose first step is first; false
// if it is corrupt.
func (b *blockColumns) decode(data []byte, n int, first int64) bool {
	r := bitReader{b: data}
	var codes [3]code
	for c := range codes {
		codes[c] = code{order: uint(r.bits(2)), k: uint(r.bits(6)), shift: uint(r.bits(6))}
	}
	if codes[colStep].order == 0 || codes[colTime].order == 0 {
		return false
	}
	b.x[colStep][0] = uint64(first)
	b.x[colTime][0] = r.bits(64)
	b.x[colValue][0] = r.bits(64)
	for c, cd := range codes {
		x := b.x[c][:n]
		if cd.order == 0 {
			var lead, trail uint
			for i := 1; i < n; i++ {
				x[i] = x[i-1] ^ r.xor(&lead, &trail)
			}
			continue
		}
		r.column(x, cd)
	}
	return !r.bad()
}

// column reads a column of order 1 to 3 (x[0] is set): the residuals,
// then the words, one loop per order (this is the readers' inner loop).
func (r *bitReader) column(x []uint64, cd code) {
	var z [BlockPoints]uint64
	r.residuals(z[1:len(x)], cd.k)
	x[0] >>= cd.shift
	i := 1
	for ; i < min(len(x), int(cd.order)); i++ {
		x[i] = z[i] + predict(x, i, cd.order)
	}
	switch cd.order {
	case 1:
		for ; i < len(x); i++ {
			x[i] = z[i] + x[i-1]
		}
	case 2:
		for ; i < len(x); i++ {
			x[i] = z[i] + 2*x[i-1] - x[i-2]
		}
	default:
		for ; i < len(x); i++ {
			x[i] = z[i] + 3*x[i-1] - 3*x[i-2] + x[i-3]
		}
	}
	if cd.shift > 0 {
		for i := range x {
			x[i] <<= cd.shift
		}
	}
}

// residuals reads Rice codes into z (unzigzagged). The common case, a
// code within one peek, is written out here: a function for it is too
// big for the compiler to inline, and this is the readers' inner loop.
func (r *bitReader) residuals(z []uint64, k uint) {
	b, pos := r.b, r.pos
	for i := range z {
		var w uint64
		if j := pos >> 3; j+8 <= uint(len(b)) {
			w = binary.BigEndian.Uint64(b[j:]) << (pos & 7)
		} else {
			r.pos = pos
			w = r.peekEnd()
		}
		q := uint(bits.LeadingZeros64(^w))
		if q < riceEscape && q+1+k <= 57 {
			pos += q + 1 + k
			z[i] = unzigzag(uint64(q)<<k | w<<(q+1)>>(64-k))
			continue
		}
		r.pos = pos
		z[i] = unzigzag(r.riceLong(k, q))
		pos = r.pos
	}
	r.pos = pos
}

// predict is the prediction of x[i] of an order (lower while fewer words
// precede it).
func predict(x []uint64, i int, order uint) uint64 {
	switch min(order, uint(i)) {
	case 1:
		return x[i-1]
	case 2:
		return 2*x[i-1] - x[i-2]
	default:
		return 3*x[i-1] - 3*x[i-2] + x[i-3]
	}
}

// commonZeros is the number of low bits that are zero in every word (at
// most 63).
func commonZeros(x []uint64) uint {
	var or uint64
	for _, v := range x {
		or |= v
	}
	return uint(min(bits.TrailingZeros64(or), 63))
}

// shifted returns x's words shifted right.
func shifted(x []uint64, shift uint) *[BlockPoints]uint64 {
	var y [BlockPoints]uint64
	for i, v := range x {
		y[i] = v >> shift
	}
	return &y
}

func zigzag(d uint64) uint64   { return d<<1 ^ uint64(int64(d)>>63) }
func unzigzag(z uint64) uint64 { return z>>1 ^ -(z & 1) }

// bestCode returns the cheapest of the orders for a column (the first of
// equals).
func bestCode(x []uint64, orders []uint) code {
	best, bestBits := code{order: orders[0]}, -1
	var z [BlockPoints]uint64
	for _, o := range orders {
		var cd code
		var n int
		if o == 0 {
			cd, n = code{}, xorBits(x)
		} else {
			cd.order, cd.shift = o, commonZeros(x)
			y := shifted(x, cd.shift)
			for i := 1; i < len(x); i++ {
				z[i] = zigzag(y[i] - predict(y[:len(x)], i, o))
			}
			cd.k, n = riceK(z[1:len(x)])
		}
		if bestBits < 0 || n < bestBits {
			best, bestBits = cd, n
		}
	}
	return best
}

// riceK returns the Rice parameter that takes the fewest bits for z and
// the bits. The best k is near the median length L of z's words (the mean
// would follow the block's first residuals, which predict from fewer
// words): L-2 to L are tried (a wider range found nothing smaller on the
// series of BenchmarkChunkBytes).
func riceK(z []uint64) (uint, int) {
	if len(z) == 0 {
		return 0, 0
	}
	var lens [65]int
	for _, v := range z {
		lens[bits.Len64(v)]++
	}
	median, seen := -1, 0
	for seen*2 < len(z) {
		median++
		seen += lens[median]
	}
	bestK, best := uint(0), -1
	for k := max(median-2, 0); k <= min(median, 63); k++ {
		n := 0
		for _, v := range z {
			n += riceBits(v, uint(k))
		}
		if best < 0 || n < best {
			bestK, best = uint(k), n
		}
	}
	return bestK, best
}

// riceBits is what bitWriter.rice writes for z.
func riceBits(z uint64, k uint) int {
	if q := z >> k; q < riceEscape {
		return int(q) + 1 + int(k)
	}
	return riceEscape + 6 + bits.Len64(z)
}

// xorBits is what bitWriter.xor writes for a column.
func xorBits(x []uint64) int {
	n := 0
	var lead, trail uint
	for i := 1; i < len(x); i++ {
		_, hn, _, bn := xorCode(x[i]^x[i-1], &lead, &trail)
		n += int(hn + bn)
	}
	return n
}

// xorCode is Gorilla's code of a value's XOR with the previous one, as a
// head and a body with their lengths: 0 for equal values; 10 and the
// meaningful bits when they fit in the previous window (leading and
// trailing zeros); otherwise 11, 6 bits of leading zeros, 6 bits of length
// - 1 and the meaningful bits, which become the window.
func xorCode(v uint64, lead, trail *uint) (head uint64, hn uint, body uint64, bn uint) {
	if v == 0 {
		return 0, 1, 0, 0
	}
	l, t := uint(bits.LeadingZeros64(v)), uint(bits.TrailingZeros64(v))
	if *lead+*trail > 0 && l >= *lead && t >= *trail {
		return 0b10, 2, v >> *trail, 64 - *lead - *trail
	}
	*lead, *trail = l, t
	return 0b11<<12 | uint64(l)<<6 | uint64(63-l-t), 14, v >> t, 64 - l - t
}

// bitWriter appends bits, most significant first.
type bitWriter struct {
	b   []byte
	acc uint64 // the low n bits are pending
	n   uint
}

// bits writes the n low bits of v.
func (w *bitWriter) bits(v uint64, n uint) {
	if n > 32 {
		w.bits(v>>32, n-32)
		n = 32
	}
	w.acc = w.acc<<n | v&(1<<n-1)
	w.n += n
	for w.n >= 8 {
		w.n -= 8
		w.b = append(w.b, byte(w.acc>>w.n))
	}
}

// done pads the last byte with zeros and returns the bytes.
func (w *bitWriter) done() []byte {
	if w.n > 0 {
		w.b = append(w.b, byte(w.acc<<(8-w.n)))
		w.n = 0
	}
	return w.b
}

// rice writes z Rice coded with parameter k (or escaped: see the top).
func (w *bitWriter) rice(z uint64, k uint) {
	if q := z >> k; q < riceEscape {
		w.bits(1<<(q+1)-2, uint(q)+1) // q ones and a zero
		w.bits(z, k)
		return
	}
	l := uint(bits.Len64(z))
	w.bits(1<<riceEscape-1, riceEscape)
	w.bits(uint64(l-1), 6)
	w.bits(z, l)
}

// xor writes a value's XOR with the previous one (see xorCode).
func (w *bitWriter) xor(v uint64, lead, trail *uint) {
	head, hn, body, bn := xorCode(v, lead, trail)
	w.bits(head, hn)
	w.bits(body, bn)
}

// bitReader reads what a bitWriter wrote. Reading past the end gives
// zeros and makes bad true.
type bitReader struct {
	b   []byte
	pos uint
}

// peek returns the next bits, left aligned; the first 57 are valid.
func (r *bitReader) peek() uint64 {
	if i := r.pos >> 3; i+8 <= uint(len(r.b)) {
		return binary.BigEndian.Uint64(r.b[i:]) << (r.pos & 7)
	}
	return r.peekEnd()
}

// peekEnd is peek near the end, with zeros past it.
func (r *bitReader) peekEnd() uint64 {
	var t [8]byte
	if i := r.pos >> 3; i < uint(len(r.b)) {
		copy(t[:], r.b[i:])
	}
	return binary.BigEndian.Uint64(t[:]) << (r.pos & 7)
}

func (r *bitReader) bits(n uint) uint64 {
	if n > 56 {
		hi := r.bits(n - 32)
		return hi<<32 | r.bits(32)
	}
	w := r.peek()
	r.pos += n
	return w >> (64 - n)
}

func (r *bitReader) bad() bool { return r.pos > 8*uint(len(r.b)) }

// riceLong reads a Rice code that residuals' fast path does not: one
// longer than a peek, or an escape (q ones seen).
func (r *bitReader) riceLong(k, q uint) uint64 {
	if q < riceEscape {
		r.pos += q + 1
		return uint64(q)<<k | r.bits(k)
	}
	r.pos += riceEscape
	return r.bits(uint(r.bits(6)) + 1)
}

// xor reads what bitWriter.xor wrote.
func (r *bitReader) xor(lead, trail *uint) uint64 {
	w := r.peek()
	if w>>63 == 0 {
		r.pos++
		return 0
	}
	if w>>62 == 0b10 {
		r.pos += 2
		return r.bits(64-*lead-*trail) << *trail
	}
	l, m := uint(w>>56&63), uint(w>>50&63)
	r.pos += 14
	if l+m > 63 {
		r.pos = 1 << 40 // corrupt: makes bad() true
		return 0
	}
	*lead, *trail = l, 63-l-m
	return r.bits(m+1) << *trail
}
