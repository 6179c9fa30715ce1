package loadgen

import (
	"net"
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 50 ticks.
	stat := []byte("4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 12345 1000000 300 18446744073709551615")
	got, err := parseStatCPU(stat)
	if err != nil || got != 3*time.Second {
		t.Fatalf("parseStatCPU = %v, %v; want 3s", got, err)
	}
	for _, bad := range []string{"4242 no parenthesis", "4242 (cmd) S 1 2", "4242 (cmd) S 1 2 3 4 5 6 7 8 9 10 x 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) succeeded", bad)
		}
	}
}

func TestParseStatusKB(t *testing.T) {
	status := []byte("Name:\tconcord\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n")
	if got := parseStatusKB(status, "VmRSS:"); got != 100<<20 {
		t.Errorf("VmRSS = %d, want %d", got, 100<<20)
	}
	if got := parseStatusKB(status, "VmHWM:"); got != 200<<20 {
		t.Errorf("VmHWM = %d, want %d", got, 200<<20)
	}
	if got := parseStatusKB(status, "VmSwap:"); got != -1 {
		t.Errorf("a missing line = %d, want -1", got)
	}
}

func TestReadProcOfThisProcess(t *testing.T) {
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.PeakRSS < s.RSS || s.CPU < 0 {
		t.Fatalf("ReadProc(self) = %+v: want a positive RSS no larger than the peak", s)
	}
	if _, err := ReadProc(-1); err == nil {
		t.Fatal("ReadProc(-1) succeeded")
	}
}

func TestFindListenerFindsThisProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	pid, err := FindListener(port)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("FindListener(%d) = %d, %v; want this process, %d", port, pid, err, os.Getpid())
	}
	ln.Close()
	if pid, err := FindListener(port); err == nil {
		t.Fatalf("FindListener of a closed port found process %d", pid)
	}
}

func TestListeningInodes(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:C383 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C383 0100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 100 0 0 10 0
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 100 0 0 10 0
`)
	got := listeningInodes(table, 50051) // 0xC383
	if len(got) != 1 || got[0] != "111" {
		t.Fatalf("listeningInodes(50051) = %v, want [111] (the established socket is not listening)", got)
	}
}

func TestLoopbackPort(t *testing.T) {
	for _, tc := range []struct {
		url  string
		port int
		ok   bool
	}{
		{"http://127.0.0.1:50051", 50051, true},
		{"http://localhost:8080", 8080, true},
		{"http://[::1]:9", 9, true},
		{"https://127.0.0.2", 443, true},
		{"http://10.0.0.1:50051", 0, false},
		{"http://concord.example.com:50051", 0, false},
	} {
		port, ok := loopbackPort(tc.url)
		if port != tc.port || ok != tc.ok {
			t.Errorf("loopbackPort(%q) = %d, %t; want %d, %t", tc.url, port, ok, tc.port, tc.ok)
		}
	}
}

func TestThisMachine(t *testing.T) {
	m := ThisMachine()
	if m.CPUs < 1 || m.MemBytes <= 0 {
		t.Fatalf("ThisMachine() = %+v", m)
	}
	if LoadAverage() == "" {
		t.Fatal("no load average from /proc/loadavg")
	}
}
