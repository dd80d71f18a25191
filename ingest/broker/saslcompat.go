package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kfake serves SASLHandshake v1 only and advertises it as 1–1. librdkafka
// (kcat, confluent-kafka clients) decides whether a broker has a SASL
// handshake at all by asking for version 0 in the ApiVersions answer, so it
// refuses to authenticate to kfake ("SASL Handshake not supported by
// broker"), though it then sends version 1, which kfake handles. This file
// makes the secured broker advertise SASLHandshake 0–1; clients still pick
// version 1, the highest both sides support.
//
// kfake gives no hook to edit its own ApiVersions answer, so the answer is
// taken once from a throw-away plain kfake cluster (the same API table) and
// replayed, with the handshake range widened, by a control function on the
// real cluster. Requests kfake would answer with an error (a version above
// its range, or a v5+ request naming a cluster) are left to kfake.

// apiVersionsMaxReplay is the highest ApiVersions version replayed.
const apiVersionsMaxReplay = 4

// advertiseSASLHandshakeV0 installs the control function on c.
func advertiseSASLHandshakeV0(c *kfake.Cluster, opts ...kfake.Opt) error {
	base, err := captureApiVersions(opts...)
	if err != nil {
		return fmt.Errorf("broker: SASL handshake compatibility: %w", err)
	}
	for i := range base.ApiKeys {
		if k := &base.ApiKeys[i]; k.ApiKey == int16(kmsg.SASLHandshake) && k.MinVersion > 0 {
			k.MinVersion = 0
		}
	}
	c.ControlKey(int16(kmsg.ApiVersions), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req, ok := kreq.(*kmsg.ApiVersionsRequest)
		if !ok || req.Version > base.Version || (req.Version >= 5 && req.ClusterID != nil) {
			return nil, nil, false
		}
		resp := *base
		resp.Version = req.Version
		resp.ApiKeys = append([]kmsg.ApiVersionsResponseApiKey(nil), base.ApiKeys...)
		return &resp, nil, true
	})
	return nil
}

// captureApiVersions asks a plain, in-memory kfake cluster for its
// ApiVersions answer (version apiVersionsMaxReplay).
func captureApiVersions(opts ...kfake.Opt) (*kmsg.ApiVersionsResponse, error) {
	c, err := kfake.NewCluster(append(opts, kfake.NumBrokers(1))...)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	conn, err := net.DialTimeout("tcp", c.ListenAddrs()[0], 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return nil, err
	}
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = apiVersionsMaxReplay
	req.ClientSoftwareName, req.ClientSoftwareVersion = "streamrec", "1"
	if _, err := conn.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("streamrec")).AppendRequest(nil, req, 1)); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 1<<20 {
		return nil, fmt.Errorf("ApiVersions answer of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, err
	}
	// The ApiVersions response header is the correlation id only, even in
	// flexible versions.
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.Version = req.Version
	if err := resp.ReadFrom(body[4:]); err != nil {
		return nil, err
	}
	if resp.ErrorCode != 0 || len(resp.ApiKeys) == 0 {
		return nil, errors.New("ApiVersions answer carries an error or no keys")
	}
	return resp, nil
}
