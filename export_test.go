package streamrec

// DecodeSlow exposes the encoding/json reference path to the external tests,
// which check that the fast path agrees with it.
func DecodeSlow(d *Decoder, b []byte) (Event, error) { return d.decodeSlow(b) }
