// This file owns the end-to-end test that a websocket-style upgrade works through the shim:
// a real HTTP server in front of the shim, an upstream that needs http.Hijacker and
// http.Flusher on the writer it gets, and a raw TCP client speaking the upgrade.

package traefikoidcsidecar

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// upgradingUpstream answers an upgrade by hijacking the connection and echoing one line.
// It fails the request with 500 if the writer it received lost Hijacker or Flusher, which is
// what happens when a middleware wraps the ResponseWriter under Yaegi.
func upgradingUpstream(w http.ResponseWriter, r *http.Request) {
	if _, ok := w.(http.Flusher); !ok {
		http.Error(w, "writer is not an http.Flusher", http.StatusInternalServerError)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "writer is not an http.Hijacker", http.StatusInternalServerError)
		return
	}
	user := r.Header.Get("X-Forwarded-User")
	conn, rw, err := hj.Hijack()
	if err != nil {
		http.Error(w, "hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-User: " + user + "\r\n\r\n")
	_ = rw.Flush()
	line, err := rw.ReadString('\n')
	if err != nil {
		return
	}
	_, _ = rw.WriteString("echo: " + line)
	_ = rw.Flush()
}

func TestUpgradeThroughShimKeepsHijacker(t *testing.T) {
	sidecar := newFakeSidecar(t, allow(
		"X-Forwarded-User", "alice",
		"Set-Cookie", "__oidc_session=refreshed; Path=/; HttpOnly",
	))
	shimHandler := newTestShim(t, sidecar.srv.URL, http.HandlerFunc(upgradingUpstream), nil)
	front := httptest.NewServer(shimHandler)
	defer front.Close()

	conn, err := net.DialTimeout("tcp", front.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))

	_, err = conn.Write([]byte("GET /socket HTTP/1.1\r\n" +
		"Host: app.example.test\r\n" +
		"Connection: Upgrade\r\n" +
		"Upgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"X-Forwarded-User: mallory\r\n" +
		"\r\n"))
	if err != nil {
		t.Fatalf("write handshake: %v", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read handshake response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body := make([]byte, 200)
		n, _ := resp.Body.Read(body)
		t.Fatalf("handshake status = %d (%q), want 101", resp.StatusCode, body[:n])
	}
	if got := resp.Header.Get("X-User"); got != "alice" {
		t.Errorf("upstream saw X-Forwarded-User %q, want the sidecar's alice", got)
	}

	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatalf("write over the upgraded connection: %v", err)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read over the upgraded connection: %v", err)
	}
	if strings.TrimSpace(line) != "echo: ping" {
		t.Errorf("upgraded connection echoed %q", line)
	}
}
