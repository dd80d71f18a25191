//go:build amd64 && !purego

package learner

// dots16 sets out[i] = bias[i] + v·q[16i:16i+16] for i < len(out), summing
// like dot32 (bit-identical scores). The caller guarantees
// len(q) >= 16*len(out) and len(bias) >= len(out).
//
//go:noescape
func dots16(q []float32, v *[16]float32, bias []float32, out []float32)
