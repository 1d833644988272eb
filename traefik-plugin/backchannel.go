// This file owns the one request whose body the shim forwards: an identity provider's
// OpenID Connect Back-Channel Logout POST to the sidecar middleware's BackchannelLogoutUri.
//
// The decision request never carries a body (see ServeHTTP). For that one path the sidecar's
// answer to the decision request is a 400 carrying forwardBodyHeader; when the client's request
// is a POST, the shim then reads its body (at most maxLogoutBody bytes), POSTs it with its
// Content-Type to {SidecarUrl}/backchannel-logout/{Middleware} (or .../inline/{hash} for an
// inline block), and relays that answer (200 on
// success, 400 problem+json otherwise) to the client. The upstream is never called for it, and
// every failure answers non-2xx: a body over the cap is a 400 here, an unreachable sidecar a
// 503, as everywhere else in the shim.

package traefikoidcsidecar

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// forwardBodyHeader is the sidecar's cue, on its answer to a decision request, that the
// request is a back-channel logout and its body must be sent to the back-channel route.
const forwardBodyHeader = "X-Oidc-Sidecar-Forward-Body"

// maxLogoutBody caps the body the shim reads and forwards: the sidecar's own cap (a logout
// token is a few KiB).
const maxLogoutBody = 64 << 10

// forwardLogout sends the client's body to the sidecar's back-channel route and relays the
// answer. The response writer is written once, never wrapped.
func (m *shim) forwardLogout(rw http.ResponseWriter, req *http.Request) {
	body, err := readCapped(req.Body, maxLogoutBody)
	if err != nil {
		m.log("back-channel logout body refused", err)
		h := rw.Header()
		h.Set("Content-Type", "application/problem+json")
		h.Set("Cache-Control", "no-store")
		rw.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(rw, `{"type":"about:blank","title":"Bad back-channel logout request","status":400,"detail":"The request body is too large or unreadable."}`)
		return
	}
	out, err := http.NewRequestWithContext(req.Context(), http.MethodPost, m.cfg.logoutURL, bytes.NewReader(body))
	if err != nil {
		m.unavailable(rw, req, "cannot build the back-channel logout request", err)
		return
	}
	// Only the media type matters to the sidecar; nothing else of the client's request (its
	// cookies, its Authorization) is passed on.
	if ct := req.Header.Get("Content-Type"); ct != "" {
		out.Header.Set("Content-Type", ct)
	}
	if m.cfg.inline != nil {
		out.Header[middlewareHeader] = m.nameValue
	}
	resp, err := m.client.Do(out)
	if err != nil {
		m.unavailable(rw, req, "back-channel logout request to the sidecar failed", err)
		return
	}
	answer, err := readCapped(resp.Body, maxSidecarBody)
	resp.Body.Close()
	if err != nil {
		m.unavailable(rw, req, "cannot read the sidecar's back-channel logout answer", err)
		return
	}
	if resp.StatusCode < 200 || resp.StatusCode > 599 {
		m.unavailable(rw, req, "sidecar answered with an unexpected status", fmt.Errorf("status %d", resp.StatusCode))
		return
	}
	copyToClient(rw.Header(), resp.Header)
	rw.WriteHeader(resp.StatusCode)
	if len(answer) > 0 {
		if _, err := rw.Write(answer); err != nil {
			m.log("writing the back-channel logout answer to the client failed", err)
		}
	}
}
