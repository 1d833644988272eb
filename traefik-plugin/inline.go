// This file owns the shim's side of inline blocks (issue 12): the traefik-oidc-auth block
// written in the plugin's own configuration is known to the sidecar only by the SHA-256 of its
// canonical form (canonical.go). Requests ask {SidecarUrl}/auth/inline/{hash}; when the
// sidecar answers 404 with X-Oidc-Sidecar-Unknown-Block naming that hash (first use, sidecar
// restarted, block evicted), the shim POSTs the canonical bytes to {SidecarUrl}/inline/{hash}
// once, however many requests are waiting (single flight), and asks again once.
//
// Every failure fails closed: the upstream is called only after a 2xx from the auth route. A
// block the sidecar finds invalid (422) is logged once with every problem and answers 500 to
// this middleware's requests; registration is tried again at most every invalidRetry, so a
// corrected sidecar (for example a widened allowedProviderUrls) is picked up without a reload.

package traefikoidcsidecar

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	// middlewareHeader names the Traefik middleware on auth and registration requests; the
	// sidecar uses it for log lines and metrics only.
	middlewareHeader = "X-Oidc-Sidecar-Middleware"
	// unknownBlockHeader is the sidecar's cue, on a 404, that it does not know the hash.
	unknownBlockHeader = "X-Oidc-Sidecar-Unknown-Block"
	// invalidRetry is how long a 422 answer stands before registration is tried again.
	invalidRetry = 30 * time.Second
)

// inlineBlock is the canonical block of one middleware instance and its registration state.
type inlineBlock struct {
	hash        string
	body        []byte // canonical JSON, the registration body
	registerURL string // {SidecarUrl}/inline/{hash}
	token       string // RegistrationToken; never logged

	mu           sync.Mutex
	inflight     chan struct{}      // closed when the running registration ends; nil when none runs
	lastErr      error              // outcome of the last registration, for those who waited on it
	invalid      *registrationError // the last 422, answered without asking until invalidUntil
	invalidUntil time.Time
	logged       string // problems last written to the log, so a 422 is logged once
}

// newInlineBlock prepares the registration of body under hash with the sidecar at root.
func newInlineBlock(root, hash string, body []byte, token string) *inlineBlock {
	return &inlineBlock{
		hash:        hash,
		body:        body,
		registerURL: root + "/inline/" + hash,
		token:       token,
	}
}

// registrationError is why a request could not be judged because of its inline block. status
// is what the client gets: 500 when the configuration is at fault (invalid block, token or
// peer refused, body too large), 503 when the sidecar is down or failing.
type registrationError struct {
	status  int
	what    string
	invalid bool // a 422: the block itself is wrong
}

func (e *registrationError) Error() string {
	return e.what
}

// retryUnknown handles a 404 from the auth route. Unless it is the unknown-block cue for this
// block's hash, resp is returned unchanged (relayed like any denial). Otherwise the block is
// registered and the same decision request is sent once more; its answer is returned.
func (m *shim) retryUnknown(sidecarReq *http.Request, resp *http.Response) (*http.Response, error) {
	b := m.cfg.inline
	if resp.Header.Get(unknownBlockHeader) != b.hash {
		return resp, nil
	}
	discard(resp)
	if err := b.register(m); err != nil {
		return nil, err
	}
	again, err := m.client.Do(sidecarReq)
	if err != nil {
		return nil, err
	}
	if again.StatusCode == http.StatusNotFound && again.Header.Get(unknownBlockHeader) == b.hash {
		discard(again)
		e := &registrationError{status: http.StatusServiceUnavailable, what: "the sidecar does not know the inline block right after registering it"}
		m.log("inline block", e)
		return nil, e
	}
	return again, nil
}

// discard reads a little of a response body, so its connection can be reused, and closes it.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// register makes sure the sidecar knows the block. Concurrent callers share one POST: the
// first one sends it, the others wait for its outcome.
func (b *inlineBlock) register(m *shim) error {
	b.mu.Lock()
	if b.invalid != nil && time.Now().Before(b.invalidUntil) {
		err := b.invalid
		b.mu.Unlock()
		return err
	}
	if ch := b.inflight; ch != nil {
		b.mu.Unlock()
		<-ch
		b.mu.Lock()
		err := b.lastErr
		b.mu.Unlock()
		return err
	}
	ch := make(chan struct{})
	b.inflight = ch
	b.mu.Unlock()

	err := b.post(m)

	b.mu.Lock()
	b.lastErr = err
	b.inflight = nil
	b.invalid = nil
	if re, ok := err.(*registrationError); ok && re.invalid {
		b.invalid = re
		b.invalidUntil = time.Now().Add(invalidRetry)
	}
	b.mu.Unlock()
	close(ch)
	return err
}

// post sends the registration. It is not tied to any client request's context, so a client
// that goes away does not fail the others waiting on the same registration; the client's
// Timeout still bounds it.
func (b *inlineBlock) post(m *shim) error {
	req, err := http.NewRequest(http.MethodPost, b.registerURL, bytes.NewReader(b.body))
	if err != nil {
		m.log("cannot build the inline block registration", err)
		return &registrationError{status: http.StatusInternalServerError, what: "cannot build the registration request"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(middlewareHeader, m.name)
	if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		m.log("registering the inline block with the sidecar failed", err)
		return &registrationError{status: http.StatusServiceUnavailable, what: "registration request failed"}
	}
	body, readErr := readCapped(resp.Body, maxSidecarBody)
	resp.Body.Close()
	status := resp.StatusCode
	if status >= 200 && status <= 299 {
		return nil
	}
	detail := describeProblem(body, readErr)
	if status == http.StatusUnprocessableEntity {
		b.logOnce(m, detail)
		return &registrationError{status: http.StatusInternalServerError, what: "the sidecar refused the inline block as invalid", invalid: true}
	}
	m.log("the sidecar refused the inline block registration", fmt.Errorf("status %d: %s", status, detail))
	if status >= 500 {
		return &registrationError{status: http.StatusServiceUnavailable, what: "the sidecar failed the registration"}
	}
	// 400 (hash or body refused), 403 (peer or token refused), 413 (too large), anything else:
	// a configuration problem on one side or the other.
	return &registrationError{status: http.StatusInternalServerError, what: fmt.Sprintf("the sidecar refused the registration with status %d", status)}
}

// logOnce writes the problems of a 422 to Traefik's log, unless the same problems were the
// last ones written for this block.
func (b *inlineBlock) logOnce(m *shim, detail string) {
	b.mu.Lock()
	same := b.logged == detail
	b.logged = detail
	b.mu.Unlock()
	if !same {
		m.log("the sidecar refused the inline block (422); this middleware answers 500 until it is fixed", fmt.Errorf("%s", detail))
	}
}

// problemBody is the part of the sidecar's problem+json (RFC 9457) the shim logs.
type problemBody struct {
	Title    string          `json:"title"`
	Detail   string          `json:"detail"`
	Problems []problemDetail `json:"problems"`
}

// problemDetail is one entry of the 422 answer's "problems" member.
type problemDetail struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// describeProblem renders a problem+json body as one log line: every problem as
// "path: message", else the detail or title, else the raw body (cut short).
func describeProblem(body []byte, readErr error) string {
	if readErr != nil {
		return "unreadable answer: " + readErr.Error()
	}
	var p problemBody
	if err := json.Unmarshal(body, &p); err == nil {
		if len(p.Problems) > 0 {
			parts := make([]string, 0, len(p.Problems))
			for _, q := range p.Problems {
				parts = append(parts, q.Path+": "+q.Message)
			}
			return strings.Join(parts, "; ")
		}
		if p.Detail != "" {
			return p.Detail
		}
		if p.Title != "" {
			return p.Title
		}
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	if s == "" {
		return "no details"
	}
	return s
}

// blockHeaderList is the part of a canonical block that names the headers the sidecar adds to
// the requests it allows: traefik-oidc-auth's Headers, a list of {Name, Value, ...}.
type blockHeaderList struct {
	Headers []blockHeader `json:"Headers"`
}

// blockHeader is one entry of Headers; only its name matters to the shim.
type blockHeader struct {
	Name string `json:"Name"`
}

// blockHeaderNames returns the Name of every Headers entry of a canonical block (canonical.go
// writes every scalar as a JSON string), trimmed, blank ones left out. A block whose Headers
// has another shape gives none: the sidecar refuses it (422), so no request passes anyway.
func blockHeaderNames(canonical []byte) []string {
	var block blockHeaderList
	if len(canonical) == 0 || json.Unmarshal(canonical, &block) != nil {
		return nil
	}
	var names []string
	for _, h := range block.Headers {
		if name := strings.TrimSpace(h.Name); name != "" {
			names = append(names, name)
		}
	}
	return names
}
