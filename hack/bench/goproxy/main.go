// go-rp: Go's net/http/httputil.ReverseProxy in front of one backend, set up
// the way Knative's activator and the KEDA HTTP add-on's interceptor set up
// theirs, as a peer column in `make bench` (hack/bench/run.sh builds it with
// `go build`; standard library only, so no module download).
//
// Both keep the client's Host, pass a pooled copy buffer (BufferPool) and use
// an HTTP/1 transport with keep-alives on, compression off and HTTP/2 not
// forced (knative.dev/pkg/network's NewProxyAutoTransport; the interceptor's
// KEDA_HTTP_FORCE_HTTP2=false). Their idle pools differ: Knative 1,000 in all
// and 100 per host, KEDA 100 (KEDA_HTTP_MAX_IDLE_CONNS). Here both limits are
// 1,000, so that the bench's 256 client connections to one backend never
// churn upstream connections: a choice in Go's favour, not against it.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// bufferPool hands ReverseProxy 32 KiB copy buffers, as Knative's activator
// and KEDA's interceptor do, instead of one allocation per response.
type bufferPool struct{ pool sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any {
		b := make([]byte, 32*1024)
		return &b
	}}}
}

func (p *bufferPool) Get() []byte  { return *(p.pool.Get().(*[]byte)) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

func main() {
	listen := flag.String("listen", "127.0.0.1:18085", "address to listen on")
	backend := flag.String("backend", "127.0.0.1:18001", "backend host:port (HTTP/1.1)")
	idle := flag.Int("max-idle-conns", 1000, "MaxIdleConns and MaxIdleConnsPerHost")
	flag.Parse()

	target := &url.URL{Scheme: "http", Host: *backend}
	transport := &http.Transport{
		Proxy: nil, // never an environment proxy: loopback only
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          *idle,
		MaxIdleConnsPerHost:   *idle,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		ExpectContinueTimeout: time.Second,
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = transport
	proxy.BufferPool = newBufferPool()
	proxy.FlushInterval = 0 // Knative's value: flush at once only when streaming
	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, "go-rp: backend "+*backend+" failed: "+err.Error(), http.StatusBadGateway)
	}

	server := &http.Server{
		Addr:              *listen,
		Handler:           proxy,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	log.Printf("go-rp: %s -> %s (idle pool %d)", *listen, *backend, *idle)
	log.Fatal(server.ListenAndServe())
}
