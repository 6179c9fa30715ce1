package loadgen

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one `concord bench` run measured.
type Report struct {
	Scenario     string    `json:"scenario"`
	Date         time.Time `json:"date"`
	Machine      Machine   `json:"machine"`
	LoadAvgStart string    `json:"loadavg_start"`
	LoadAvgEnd   string    `json:"loadavg_end"`
	Server       string    `json:"server,omitempty"`
	ServerPID    int       `json:"server_pid,omitempty"`
	// ServerPIDFrom says how the server's process was found.
	ServerPIDFrom string `json:"server_pid_from,omitempty"`

	Throughput  []ThroughputRun    `json:"throughput,omitempty"`
	Summary     []ModeSummary      `json:"summary,omitempty"`
	LongSession *LongSessionResult `json:"long_session,omitempty"`
	MPAC        []MPACResult       `json:"mpac,omitempty"`
	Idle        *IdleResult        `json:"idle,omitempty"`
	Restart     *RestartResult     `json:"restart,omitempty"`
}

// ModeSummary is the median over the runs of one mode.
type ModeSummary struct {
	Mode               string    `json:"mode"`
	Runs               int       `json:"runs"`
	Ratios             []float64 `json:"ratios"`
	MedianRatio        float64   `json:"median_ratio"`
	MedianConcordSends float64   `json:"median_concord_sends_per_sec"`
	MedianCeilingSends float64   `json:"median_ceiling_sends_per_sec"`
}

// Summarise fills r.Summary from r.Throughput.
func (r *Report) Summarise() {
	r.Summary = nil
	index := map[string]int{}
	var concord, ceiling [][]float64
	for _, t := range r.Throughput {
		i, ok := index[t.Mode]
		if !ok {
			i = len(r.Summary)
			index[t.Mode] = i
			r.Summary = append(r.Summary, ModeSummary{Mode: t.Mode})
			concord, ceiling = append(concord, nil), append(ceiling, nil)
		}
		s := &r.Summary[i]
		s.Runs++
		s.Ratios = append(s.Ratios, t.Ratio)
		concord[i] = append(concord[i], t.Concord.SendsPerSec)
		ceiling[i] = append(ceiling[i], t.Ceiling.SendsPerSec)
	}
	for i := range r.Summary {
		s := &r.Summary[i]
		s.MedianRatio, s.MedianConcordSends, s.MedianCeilingSends = Median(s.Ratios), Median(concord[i]), Median(ceiling[i])
	}
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) error {
	p := &printer{w: w}
	p.f("concord bench %s — %s\n", r.Scenario, r.Date.Format(time.RFC3339))
	m := r.Machine
	p.f("machine: %d CPUs, %s, %s RAM; load average %s at the start, %s at the end\n", m.CPUs, m.Model, bytesText(m.MemBytes), r.LoadAvgStart, r.LoadAvgEnd)
	if r.Server != "" {
		pid := "process unknown: no server CPU or memory"
		if r.ServerPID != 0 {
			pid = fmt.Sprintf("pid %d, %s", r.ServerPID, r.ServerPIDFrom)
		}
		p.f("server: %s (%s)\n", r.Server, pid)
	}
	if len(r.Throughput) > 0 {
		p.throughput(r)
	}
	if r.LongSession != nil {
		p.longSession(r.LongSession)
	}
	for i := range r.MPAC {
		p.mpac(i+1, &r.MPAC[i])
	}
	if r.Idle != nil {
		p.idle(r.Idle)
	}
	if r.Restart != nil {
		p.restart(r.Restart)
	}
	return p.err
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (p *printer) table(header string, rows []string) {
	if p.err != nil {
		return
	}
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	p.err = tw.Flush()
}

func (p *printer) throughput(r *Report) {
	p.f("\nSends/s of complete sessions, each phase against the ceiling (a bare connect-go handler answering a canned Ack) and the server, side by side:\n")
	var rows []string
	phase := func(t ThroughputRun, ph Phase) string {
		row := fmt.Sprintf("%s\t%d\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%.2f", t.Mode, t.Run, ph.Target, ph.SendsPerSec, ph.SessionsPerSec,
			durText(ph.Latency.P50), durText(ph.Latency.P99), durText(ph.Latency.P999), ph.LoadGenerator.Cores)
		if ph.Server != nil {
			row += fmt.Sprintf("\t%.0f µs\t%.2f\t%s", ph.ServerCPUPerSend, ph.Server.Cores, bytesText(ph.Server.RSSBytes))
		} else {
			row += "\t-\t-\t-"
		}
		if ph.Errors > 0 {
			row += fmt.Sprintf("\t%d errors, first: %s", ph.Errors, ph.FirstError)
		}
		return row
	}
	for _, t := range r.Throughput {
		rows = append(rows, phase(t, t.Ceiling), phase(t, t.Concord),
			fmt.Sprintf("%s\t%d\tratio %.2f\t\t\t\t\t\t\t\t\t", t.Mode, t.Run, t.Ratio))
	}
	p.table("mode\trun\ttarget\tsends/s\tsessions/s\tp50\tp99\tp99.9\tloadgen cores\tserver CPU/send\tserver cores\tserver RSS", rows)
	for _, s := range r.Summary {
		ratios := make([]string, len(s.Ratios))
		for i, x := range s.Ratios {
			ratios[i] = fmt.Sprintf("%.2f", x)
		}
		p.f("%s: ratio %.2f (median of %s); Concord %.0f Sends/s, ceiling %.0f Sends/s (medians)\n",
			s.Mode, s.MedianRatio, strings.Join(ratios, ", "), s.MedianConcordSends, s.MedianCeilingSends)
	}
}

func (p *printer) longSession(l *LongSessionResult) {
	p.f("\nOne Decision session of serial Evaluations (%d messages), server CPU per message over windows:\n", l.Messages)
	var rows []string
	for _, c := range l.Checkpoints {
		cpu := "-"
		if c.ServerCPUPerMessage > 0 {
			cpu = fmt.Sprintf("%.0f µs", c.ServerCPUPerMessage)
		}
		rows = append(rows, fmt.Sprintf("%d\t%d\t%s\t%s\t%s", c.At, c.Messages, cpu, durText(c.Latency.P50), durText(c.Latency.P99)))
	}
	p.table("from message\twindow\tserver CPU/message\tp50\tp99", rows)
	if l.Growth > 0 {
		p.f("growth: the last window costs %.2f× the first\n", l.Growth)
	}
}

func (p *printer) mpac(run int, m *MPACResult) {
	p.f("\nMPAC cycle run %d: %d agents on one session: %.0f cycles/s, %.0f durable steps/s, %d envelopes streamed; step p50 %s p99 %s p99.9 %s, cycle p50 %s p99 %s",
		run, m.Agents, m.CyclesPerSec, m.StepsPerSec, m.Delivered, durText(m.StepLatency.P50), durText(m.StepLatency.P99), durText(m.StepLatency.P999),
		durText(m.CycleLatency.P50), durText(m.CycleLatency.P99))
	if m.Server != nil {
		p.f("; server %.2f cores, %s RSS", m.Server.Cores, bytesText(m.Server.RSSBytes))
	}
	p.f("; load generator %.2f cores", m.LoadGenerator.Cores)
	p.f("\n")
	if m.Errors > 0 {
		p.f("  %d errors, first: %s\n", m.Errors, m.FirstError)
	}
}

func (p *printer) idle(i *IdleResult) {
	p.f("\n%d idle open sessions (opened in %.1f s, %.0f SessionStarts/s):\n", i.Sessions, i.OpenSeconds, i.StartsPerSec)
	p.f("  server RSS %s before, %s once open (%.0f B per session), %s after %.0f s idle (%.0f B per session); peak %s\n",
		bytesText(i.RSSBefore), bytesText(i.RSSAfterOpen), i.BytesPerOpen, bytesText(i.RSSAfterIdle), i.WindowSeconds, i.BytesPerIdle, bytesText(i.PeakRSS))
	p.f("  idle CPU: %.3f cores (%.2f s of CPU in %.0f s)\n", i.IdleCores, i.IdleCPUSeconds, i.WindowSeconds)
}

func (p *printer) restart(r *RestartResult) {
	if r.Filled > 0 {
		p.f("\nFilled %d messages in %d sessions in %.1f s (%.0f messages/s); data dir %s\n", r.Filled, r.FilledSessions, r.FillSeconds, r.FillPerSec, bytesText(r.DataBytes))
	} else {
		p.f("\nRestarts on %s as it was (%s)\n", r.DataDir, bytesText(r.DataBytes))
	}
	var rows []string
	for i, t := range r.Restarts {
		rows = append(rows, fmt.Sprintf("%d\t%.2f s\t%.2f s\t%t\t%s", i+1, t.ReadySeconds, t.FirstAcceptSeconds, t.AcceptedDuringRestore, bytesText(t.RSSBytes)))
	}
	p.table("restart\tprocess start → Initialize\tfirst accepted connection\taccepted during restore\tRSS when ready", rows)
	p.f("median: %.2f s to serving\n", r.MedianReadySecond)
}

// durText prints a latency with three significant figures.
func durText(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// bytesText prints a size in binary units.
func bytesText(n int64) string {
	switch {
	case n < 0:
		return "?"
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
}
