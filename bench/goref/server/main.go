// Command server is a minimal grpc-go server of alpcrun.v1.Cache, the
// reference of bench/bigload.py (issue 16): one map under a mutex, the
// level rules of Set and Update, no TTL, no tombstones, no limits but a
// maximum message size of 1100 MiB. Cleartext, or TLS with -cert and -key.
//
//	server -listen 127.0.0.1:PORT [-cert FILE -key FILE]
//
// The bindings (package cachepb) are generated from proto/ by
// bench/bigload.py's build step (protoc-gen-go, protoc-gen-go-grpc).
package main

import (
	"bytes"
	"context"
	"flag"
	"log"
	"net"
	"sync"

	"alpcrund/bench/goref/cachepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

const maxMsg = 1100 << 20

type entry struct {
	level   uint32
	payload []byte
}

type server struct {
	cachepb.UnimplementedCacheServer
	mu sync.Mutex
	m  map[string]entry
}

func need(in *cachepb.SharedData, level bool) error {
	if in.SessionId == "" {
		return status.Error(codes.InvalidArgument, "session_id is required")
	}
	if level && in.UpdateLevel == nil {
		return status.Error(codes.InvalidArgument, "update_level is required")
	}
	return nil
}

func (s *server) SetSharedData(_ context.Context, in *cachepb.SharedData) (*emptypb.Empty, error) {
	if err := need(in, true); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[in.SessionId]; ok {
		if e.level == in.GetUpdateLevel() && bytes.Equal(e.payload, in.Payload) {
			return &emptypb.Empty{}, nil
		}
		return nil, status.Errorf(codes.AlreadyExists, "shared data already exists for session %s at update level %d", in.SessionId, e.level)
	}
	s.m[in.SessionId] = entry{in.GetUpdateLevel(), in.Payload}
	return &emptypb.Empty{}, nil
}

func (s *server) UpdateSharedData(_ context.Context, in *cachepb.SharedData) (*emptypb.Empty, error) {
	if err := need(in, true); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[in.SessionId]
	switch {
	case !ok:
		return nil, status.Errorf(codes.NotFound, "shared data not found for session %s", in.SessionId)
	case in.GetUpdateLevel() == e.level && bytes.Equal(e.payload, in.Payload):
	case in.GetUpdateLevel() != e.level+1:
		return nil, status.Errorf(codes.FailedPrecondition, "update level mismatch: expected %d, got %d", e.level+1, in.GetUpdateLevel())
	default:
		s.m[in.SessionId] = entry{in.GetUpdateLevel(), in.Payload}
	}
	return &emptypb.Empty{}, nil
}

func (s *server) GetSharedData(_ context.Context, in *cachepb.SharedData) (*cachepb.SharedData, error) {
	if err := need(in, false); err != nil {
		return nil, err
	}
	s.mu.Lock()
	e, ok := s.m[in.SessionId]
	s.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "shared data not found for session %s", in.SessionId)
	}
	if in.UpdateLevel != nil && *in.UpdateLevel != e.level {
		return nil, status.Errorf(codes.FailedPrecondition, "update level mismatch: expected %d, got %d", e.level, *in.UpdateLevel)
	}
	return &cachepb.SharedData{SessionId: in.SessionId, UpdateLevel: &e.level, Payload: e.payload}, nil
}

func (s *server) DeleteSharedData(_ context.Context, in *cachepb.SharedData) (*emptypb.Empty, error) {
	if err := need(in, false); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[in.SessionId]; !ok {
		return nil, status.Errorf(codes.NotFound, "shared data not found for session %s", in.SessionId)
	}
	delete(s.m, in.SessionId)
	return &emptypb.Empty{}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:2337", "address to listen on")
	cert := flag.String("cert", "", "TLS certificate (PEM); cleartext without")
	key := flag.String("key", "", "TLS private key (PEM)")
	flag.Parse()
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg)}
	if *cert != "" {
		creds, err := credentials.NewServerTLSFromFile(*cert, *key)
		if err != nil {
			log.Fatal(err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	g := grpc.NewServer(opts...)
	cachepb.RegisterCacheServer(g, &server{m: map[string]entry{}})
	log.Fatal(g.Serve(lis))
}
