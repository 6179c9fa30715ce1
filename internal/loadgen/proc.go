package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// Linux fixes it at 100 for user space on every architecture Go supports.
const clockTicks = 100

// ProcSample is what /proc says about a process at one moment.
type ProcSample struct {
	At time.Time
	// CPU is the user and system time the process has used so far, all
	// threads included, with the 10 ms resolution of /proc.
	CPU time.Duration
	// RSS and PeakRSS are VmRSS and VmHWM, in bytes.
	RSS, PeakRSS int64
}

// ReadProc samples process pid.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read process %d: %w", pid, err)
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return s, fmt.Errorf("process %d: %w", pid, err)
	}
	s.CPU = cpu
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read process %d: %w", pid, err)
	}
	s.RSS, s.PeakRSS = parseStatusKB(status, "VmRSS:"), parseStatusKB(status, "VmHWM:")
	return s, nil
}

// parseStatCPU returns utime+stime from the content of /proc/<pid>/stat.
// The command name (field 2) may hold spaces and parentheses, so fields
// are counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("malformed /proc stat: no command name")
	}
	f := strings.Fields(string(stat[end+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after the command name", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc stat CPU time %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseStatusKB returns the value of a "Key:   123 kB" line of
// /proc/<pid>/status in bytes, or -1 when the line is missing.
func parseStatusKB(status []byte, key string) int64 {
	for line := range strings.Lines(string(status)) {
		rest, ok := strings.CutPrefix(line, key)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return -1
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return -1
		}
		return n * 1024
	}
	return -1
}

// ProcUsage is a process's use of CPU and memory between two samples.
type ProcUsage struct {
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// Cores is CPU time over wall time: 1.0 is one core busy throughout.
	Cores        float64 `json:"cores"`
	RSSBytes     int64   `json:"rss_bytes"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
}

// Usage returns what pid used between before and after.
func Usage(pid int, before, after ProcSample) ProcUsage {
	u := ProcUsage{PID: pid, CPUSeconds: (after.CPU - before.CPU).Seconds(), RSSBytes: after.RSS, PeakRSSBytes: after.PeakRSS}
	if wall := after.At.Sub(before.At).Seconds(); wall > 0 {
		u.Cores = u.CPUSeconds / wall
	}
	return u
}

// Meter samples one process, or does nothing when it has no process (PID
// 0): a remote server whose CPU cannot be read.
type Meter struct{ PID int }

// Sample reads the process, or returns a zero sample without one.
func (m Meter) Sample() (ProcSample, error) {
	if m.PID == 0 {
		return ProcSample{At: time.Now()}, nil
	}
	return ReadProc(m.PID)
}

// Between returns the process's usage between two samples, nil without a
// process.
func (m Meter) Between(before, after ProcSample) *ProcUsage {
	if m.PID == 0 {
		return nil
	}
	u := Usage(m.PID, before, after)
	return &u
}

// FindListener returns the process that listens on TCP port on this
// machine: the socket inode from /proc/net/tcp and tcp6, then the process
// holding a descriptor of that socket among /proc/<pid>/fd. It needs the
// right to read the other process's descriptors (the same user, or root).
func FindListener(port int) (int, error) {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, ino := range listeningInodes(b, port) {
			inodes["socket:["+ino+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no socket listens on port %d", port)
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if err != nil || !inodes[link] {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err == nil {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("port %d listens, but no readable process holds its socket (pass --server-pid)", port)
}

// listeningInodes returns the inodes of the sockets of a /proc/net/tcp
// table that listen on port.
func listeningInodes(table []byte, port int) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
			out = append(out, f[9])
		}
	}
	return out
}

// Machine describes the machine the load generator runs on.
type Machine struct {
	CPUs     int    `json:"cpus"`
	Model    string `json:"cpu_model"`
	MemBytes int64  `json:"mem_bytes"`
	GoOS     string `json:"goos"`
	GoArch   string `json:"goarch"`
}

// ThisMachine reads /proc/cpuinfo and /proc/meminfo.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoOS: runtime.GOOS, GoArch: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemBytes = parseStatusKB(b, "MemTotal:")
	}
	return m
}

// LoadAverage returns the 1, 5 and 15 minute load averages of
// /proc/loadavg as written there, or "" when it cannot be read.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
