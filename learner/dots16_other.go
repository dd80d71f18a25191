//go:build !amd64 || purego

package learner

// dots16 sets out[i] = bias[i] + v·q[16i:16i+16] for i < len(out), summing
// like dot32 (bit-identical scores).
func dots16(q []float32, v *[16]float32, bias []float32, out []float32) {
	q, bias = q[:16*len(out)], bias[:len(out)]
	for i := range out {
		r := (*[16]float32)(q[i*16 : i*16+16])
		s0 := v[0] * r[0]
		s1 := v[1] * r[1]
		s2 := v[2] * r[2]
		s3 := v[3] * r[3]
		s0 += v[4] * r[4]
		s1 += v[5] * r[5]
		s2 += v[6] * r[6]
		s3 += v[7] * r[7]
		s0 += v[8] * r[8]
		s1 += v[9] * r[9]
		s2 += v[10] * r[10]
		s3 += v[11] * r[11]
		s0 += v[12] * r[12]
		s1 += v[13] * r[13]
		s2 += v[14] * r[14]
		s3 += v[15] * r[15]
		out[i] = bias[i] + ((s0 + s1) + (s2 + s3))
	}
}
