// Command streamrec-healthcheck is the container health probe: it GETs each
// URL given and exits 0 when every answer is 2xx, 1 otherwise. The distroless
// image has no shell, curl or wget, so docker-compose health checks run this.
//
//	streamrec-healthcheck http://127.0.0.1:8080/readyz
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run probes every URL and returns the exit status.
func run(urls []string, stderr io.Writer) int {
	if len(urls) == 0 {
		fmt.Fprintln(stderr, "usage: streamrec-healthcheck URL...")
		return 2
	}
	client := &http.Client{Timeout: 2 * time.Second}
	for _, u := range urls {
		if err := probe(client, u); err != nil {
			fmt.Fprintf(stderr, "streamrec-healthcheck: %v\n", err)
			return 1
		}
	}
	return 0
}

func probe(client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	return nil
}
