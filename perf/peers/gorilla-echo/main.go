// gorilla/websocket peer for ringcast's perf suite: the same surface as ringcast, so one bench
// command measures both. Endpoints:
//
//	ws://HOST:PORT/echo   echoes every message back with its type (text/binary)
//	ws://HOST:PORT/<any>  ringcast's pub/sub protocol: {"op":"sub","topic":T} subscribes,
//	                      {"op":"pub","topic":T,"data":D} publishes; subscribers get
//	                      {"op":"msg","topic":T,"seq":N,"data":D}, seq per topic from 1
//	POST /publish         body {"topic":T,"data":D} (or a pub envelope) -> {"ok":true,"seq":N}
//	GET /health           200 ok
//
// Usage: gorilla-echo [-host H] [-port P] [-cert C -key K (TLS)]; logs "gorilla: ready on H:P" on stderr once
// listening. Built offline from Debian's golang-github-gorilla-websocket-dev by
// perf/peers/build-gorilla.sh.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/gorilla/websocket"
)

// A subscriber's outbound queue; a full queue means a slow consumer, which is closed.
const sendQueue = 1024

type subscriber struct {
	conn *websocket.Conn
	out  chan *websocket.PreparedMessage
}

type topic struct {
	seq  uint64
	subs map[*subscriber]struct{}
}

type hub struct {
	mu     sync.Mutex
	topics map[string]*topic
}

type envelope struct {
	Op    string          `json:"op"`
	Topic string          `json:"topic"`
	Seq   uint64          `json:"seq,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

func (h *hub) topic(name string) *topic {
	t := h.topics[name]
	if t == nil {
		t = &topic{subs: make(map[*subscriber]struct{})}
		h.topics[name] = t
	}
	return t
}

// publish builds the frame once and hands the same prepared message to every subscriber.
func (h *hub) publish(name string, data json.RawMessage) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topic(name)
	t.seq++
	body, _ := json.Marshal(envelope{Op: "msg", Topic: name, Seq: t.seq, Data: data})
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, body)
	if err != nil {
		return t.seq
	}
	for s := range t.subs {
		select {
		case s.out <- pm:
		default:
			delete(t.subs, s)
			s.conn.Close()
		}
	}
	return t.seq
}

var upgrader = websocket.Upgrader{
	CheckOrigin:     func(*http.Request) bool { return true },
	WriteBufferPool: &sync.Pool{},
}

func echo(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if c.WriteMessage(mt, msg) != nil {
			return
		}
	}
}

func (h *hub) serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s := &subscriber{conn: c, out: make(chan *websocket.PreparedMessage, sendQueue)}
	mine := map[string]bool{}
	go func() {
		for pm := range s.out {
			if c.WritePreparedMessage(pm) != nil {
				c.Close()
				return
			}
		}
	}()
	defer func() {
		h.mu.Lock()
		for name := range mine {
			delete(h.topic(name).subs, s)
		}
		h.mu.Unlock()
		close(s.out)
		c.Close()
	}()
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		var m envelope
		if json.Unmarshal(msg, &m) != nil {
			return
		}
		switch m.Op {
		case "sub":
			h.mu.Lock()
			h.topic(m.Topic).subs[s] = struct{}{}
			h.mu.Unlock()
			mine[m.Topic] = true
		case "pub":
			h.publish(m.Topic, m.Data)
		}
	}
}

func (h *hub) servePublish(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var m envelope
	if err != nil || json.Unmarshal(body, &m) != nil {
		http.Error(w, `{"ok":false}`, http.StatusBadRequest)
		return
	}
	seq := h.publish(m.Topic, m.Data)
	out := fmt.Sprintf(`{"ok":true,"seq":%d}`, seq)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(out)))
	io.WriteString(w, out)
}

func main() {
	host := flag.String("host", "127.0.0.1", "listen address")
	port := flag.Int("port", 8080, "listen port (0 = any)")
	cert := flag.String("cert", "", "PEM certificate chain: serve wss:// and https:// (crypto/tls)")
	key := flag.String("key", "", "PEM private key of -cert")
	flag.Parse()
	h := &hub{topics: make(map[string]*topic)}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/publish", h.servePublish)
	mux.HandleFunc("/", h.serveWS)
	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", *host, *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "gorilla:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "gorilla: ready on %s\n", ln.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; os.Exit(0) }()
	if *cert != "" {
		http.ServeTLS(ln, mux, *cert, *key)
		return
	}
	http.Serve(ln, mux)
}
