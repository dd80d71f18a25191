package learner

import (
	"testing"

	"github.com/streamrec/streamrec/features"
)

// FuzzSnapshotPayload: a snapshot payload that passed its checksum but is
// malformed (a learner bug, or a blob written by another version) is an
// error, never a panic, and a payload that decodes serves every query
// without one. The checksum is bypassed so that the fuzzer reaches the
// section decoders (each model's UnmarshalBinary and the serving indexes
// built from them).
//
//	go test -run '^$' -fuzz FuzzSnapshotPayload -fuzztime 60s -fuzzminimizetime 5x ./learner
//
// (Minimizing a new input of this size takes up to a minute by default,
// during which the fuzzer reports 0 execs/s).
func FuzzSnapshotPayload(f *testing.F) {
	_, blob, _ := trainSyntheticSnapshot(f, 8, 16, 150, 1) // small: fast to mutate
	payload, err := VerifySnapshot(blob)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(payload)
	f.Add(payload[:len(payload)/2])
	f.Fuzz(func(t *testing.T, payload []byte) {
		s, err := decodePayload(payload)
		if err != nil {
			return
		}
		var items []string
		for i := range s.items {
			if i == 4 {
				break
			}
			items = append(items, s.items[i].ID)
		}
		u := &features.User{ID: "u1", Recent: items}
		s.Recommend(&Query{User: u, TS: 1}, 5, nil)
		s.Recommend(&Query{User: &features.User{ID: "new"}, Category: "c1", TS: 1}, 5, nil)
		s.Rank(u, append(items, "unknown"), 1, nil)
		s.Popular(5, "", 1, nil)
		for _, it := range items {
			s.Similar(it, 5, nil)
			s.ItemInfo(it)
		}
	})
}
