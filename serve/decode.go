package serve

import (
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/learner"
)

// The real collaborators meet serve's small interfaces.
var (
	_ Model     = (*learner.Snapshot)(nil)
	_ Snapshots = (*learner.RedisSnapshots)(nil)
	_ Snapshots = (*learner.MemorySnapshots)(nil)
	_ Features  = features.Store(nil)
)

// DecodeSnapshot is the default DecodeFunc: learner.DecodeSnapshot, which
// verifies magic, format version and checksum and builds the serving
// indexes.
func DecodeSnapshot(blob []byte) (Model, ModelInfo, error) {
	s, err := learner.DecodeSnapshot(blob)
	if err != nil {
		return nil, ModelInfo{}, err
	}
	return s, s.Info(), nil
}
