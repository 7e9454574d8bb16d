// Command client is the grpc-go client of bench/bigload.py (issue 16): the
// same client against alpcrund and against the reference server. Each
// operation is timed alone and printed with its MB/s (10^6 bytes of
// payload a second); the last line is a JSON summary. Every reply is
// checked (status OK, and a Get's level and payload byte for byte,
// outside the timing); any error exits 1.
//
//	client -addr HOST:PORT [-ca FILE] -op set|update|get -size BYTES -n N [-level L]
//	client -addr HOST:PORT [-ca FILE] -op get1k -n N -conns 4 -callers 64
//
// set: N Sets of new sessions, each deleted after (untimed). update: a Set
// of one byte at level 0, then Updates to levels 1..N. get: N Gets of the
// session update left at level L. get1k: N Gets of a 1 KiB payload by
// -callers goroutines over -conns connections, req/s.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"alpcrund/bench/goref/cachepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

const maxMsg = 1100 << 20

// payload is size pseudo-random bytes (1 MiB repeated), byte 0 set to tag.
func payload(size int, tag uint32) []byte {
	p := make([]byte, size)
	rand.New(rand.NewSource(1)).Read(p[:min(size, 1<<20)])
	for n := 1 << 20; n < size; n *= 2 {
		copy(p[n:], p[:n])
	}
	if size > 0 {
		p[0] = byte(tag)
	}
	return p
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func dial(addr, ca string) *grpc.ClientConn {
	opts := []grpc.DialOption{grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg))}
	if ca == "" {
		opts = append(opts, grpc.WithInsecure())
	} else {
		creds, err := credentials.NewClientTLSFromFile(ca, "")
		if err != nil {
			log.Fatal(err)
		}
		opts = append(opts, grpc.WithTransportCredentials(creds))
	}
	cc, err := grpc.Dial(addr, opts...)
	if err != nil {
		log.Fatal(err)
	}
	return cc
}

func lvl(l uint32) *uint32 { return &l }

func check(what string, err error) {
	if err != nil {
		log.Fatalf("%s: %v", what, err)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:2337", "server address")
	ca := flag.String("ca", "", "CA certificate (PEM) for TLS; cleartext without")
	op := flag.String("op", "get", "set, update, get or get1k")
	size := flag.Int("size", 64<<20, "payload bytes")
	n := flag.Int("n", 3, "operations")
	level := flag.Uint("level", 0, "get: the level update left")
	sid := flag.String("session", "big", "session id")
	conns := flag.Int("conns", 4, "get1k: connections")
	callers := flag.Int("callers", 64, "get1k: concurrent callers")
	step := flag.Bool("step", false, "print ready and wait for a line before each call")
	flag.Parse()
	in := bufio.NewReader(os.Stdin)
	ctx := context.Background()
	if *op == "get1k" {
		get1k(ctx, *addr, *ca, *sid, *n, *conns, *callers)
		return
	}
	c := cachepb.NewCacheClient(dial(*addr, *ca))
	var want []byte
	if *op == "get" {
		want = payload(*size, uint32(*level))
	}
	var p []byte
	if *op == "set" || *op == "update" {
		p = payload(*size, 0)
	}
	if *op == "update" {
		_, err := c.SetSharedData(ctx, &cachepb.SharedData{SessionId: *sid, UpdateLevel: lvl(0), Payload: []byte{0}})
		check("set level 0", err)
	}
	var total time.Duration
	for i := 1; i <= *n; i++ {
		var err error
		var r *cachepb.SharedData
		wait(*step, in, "ready", i)
		t0 := time.Now()
		switch *op {
		case "set":
			p[0] = byte(i)
			_, err = c.SetSharedData(ctx, &cachepb.SharedData{SessionId: fmt.Sprintf("%s-%d", *sid, i), UpdateLevel: lvl(1), Payload: p})
		case "update":
			p[0] = byte(i)
			_, err = c.UpdateSharedData(ctx, &cachepb.SharedData{SessionId: *sid, UpdateLevel: lvl(uint32(i)), Payload: p})
		case "get":
			r, err = c.GetSharedData(ctx, &cachepb.SharedData{SessionId: *sid})
		default:
			log.Fatalf("unknown -op %s", *op)
		}
		took := time.Since(t0)
		wait(*step, in, "done", i)
		check(*op, err)
		if *op == "get" && (r.GetUpdateLevel() != uint32(*level) || !bytes.Equal(r.Payload, want)) {
			log.Fatalf("get %d: level %d, %d payload bytes: not what update stored (level %d, %d bytes)",
				i, r.GetUpdateLevel(), len(r.Payload), *level, len(want))
		}
		if *op == "set" {
			_, err = c.DeleteSharedData(ctx, &cachepb.SharedData{SessionId: fmt.Sprintf("%s-%d", *sid, i)})
			check("delete", err)
		}
		r = nil
		total += took
		fmt.Printf("%s %d %d bytes %.3f s %.1f MB/s\n", *op, i, *size, took.Seconds(), float64(*size)/took.Seconds()/1e6)
	}
	out, _ := json.Marshal(map[string]interface{}{"op": *op, "n": *n, "bytes": *size * *n,
		"secs": total.Seconds(), "mbps": float64(*size**n) / total.Seconds() / 1e6})
	fmt.Println(string(out))
}

// wait prints what and i, then waits for a line on stdin, if step.
func wait(step bool, in *bufio.Reader, what string, i int) {
	if step {
		fmt.Printf("%s %d\n", what, i)
		if _, err := in.ReadString('\n'); err != nil {
			log.Fatal("stdin: ", err)
		}
	}
}

// get1k stores a 1 KiB payload, warms every connection up, then runs n
// Gets from callers goroutines spread over conns connections.
func get1k(ctx context.Context, addr, ca, sid string, n, conns, callers int) {
	want := payload(1024, 1)
	cs := make([]cachepb.CacheClient, conns)
	for i := range cs {
		cs[i] = cachepb.NewCacheClient(dial(addr, ca))
	}
	_, err := cs[0].SetSharedData(ctx, &cachepb.SharedData{SessionId: sid, UpdateLevel: lvl(1), Payload: want})
	check("set", err)
	for _, c := range cs {
		_, err = c.GetSharedData(ctx, &cachepb.SharedData{SessionId: sid})
		check("warm-up get", err)
	}
	var next int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func(c cachepb.CacheClient) {
			defer wg.Done()
			for atomic.AddInt64(&next, 1) <= int64(n) {
				r, err := c.GetSharedData(ctx, &cachepb.SharedData{SessionId: sid})
				check("get", err)
				if r.GetUpdateLevel() != 1 || !bytes.Equal(r.Payload, want) {
					log.Fatalf("get: level %d, %d payload bytes: not what was stored", r.GetUpdateLevel(), len(r.Payload))
				}
			}
		}(cs[g%conns])
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	out, _ := json.Marshal(map[string]interface{}{"op": "get1k", "n": n, "secs": secs,
		"rps": float64(n) / secs, "conns": conns, "callers": callers})
	fmt.Println(string(out))
}
