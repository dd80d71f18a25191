package serve

import "errors"

// DecodeSnapshot is the default DecodeFunc.
// TODO(serve): switch to learner.DecodeSnapshot once learner's Snapshot lands.
func DecodeSnapshot(blob []byte) (Model, ModelInfo, error) {
	return nil, ModelInfo{}, errors.New("serve: no snapshot decoder configured")
}
