// Package browsertest runs Debian's headless Chromium for tests through
// chromedp: Start launches one browser per test with a fresh profile, NewTab
// opens a tab whose console output and page errors are kept for failure
// messages, and Screenshot saves PNGs as test artifacts.
//
// A missing Chromium fails the test (it never skips): install it with
// `apt-get install chromium`, which `make test` does when it is missing.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ChromiumPath is where Debian's chromium package installs the browser.
const ChromiumPath = "/usr/bin/chromium"

// ArtifactsEnv names the environment variable of the folder that receives
// screenshots, one subfolder per test; without it they go to the test's
// temporary folder.
const ArtifactsEnv = "CONCORD_TEST_ARTIFACTS"

// DefaultTimeout bounds every Run of a tab unless the test's context ends
// sooner.
const DefaultTimeout = 30 * time.Second

// flags are what headless Chromium needs on a build machine without a
// display, a GPU, a sandbox-capable kernel setup or a network.
var flags = []chromedp.ExecAllocatorOption{
	chromedp.Flag("headless", true),
	chromedp.Flag("no-sandbox", true),
	chromedp.Flag("disable-gpu", true),
	chromedp.Flag("disable-quic", true),
	chromedp.Flag("no-first-run", true),
	chromedp.Flag("no-default-browser-check", true),
	chromedp.Flag("disable-background-networking", true),
	chromedp.Flag("disable-component-update", true),
	chromedp.Flag("disable-sync", true),
	chromedp.Flag("disable-extensions", true),
	chromedp.Flag("disable-default-apps", true),
	chromedp.Flag("mute-audio", true),
	chromedp.WindowSize(1280, 1000),
}

// Browser is a headless Chromium that lives until its test ends.
type Browser struct {
	ctx context.Context
}

// Start launches Chromium with a fresh profile folder. It fails the test,
// saying how to install it, when Chromium is missing.
func Start(t testing.TB) *Browser {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Fatalf("browsertest: Chromium is not installed at %s (%v): install Debian's package with `apt-get install chromium` (make test does this when it is missing)", ChromiumPath, err)
	}
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.UserDataDir(t.TempDir()),
	}, flags...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	// The first Run starts the browser; its context must not have a
	// deadline, since that deadline would stop the browser.
	if _, err := chromedp.Run(ctx, chromedp.Func(func(context.Context, *chromedp.Target) error { return nil })); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("browsertest: start %s: %v", ChromiumPath, err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return &Browser{ctx: ctx}
}

// Tab is one browser tab, bound to the test (or subtest) that opened it.
type Tab struct {
	t   testing.TB
	ctx context.Context

	mu      sync.Mutex
	console []string
	dir     string // artifact folder, made on first use
}

// NewTab opens a tab for t, a test or a subtest of the browser's test; the
// tab closes when t ends.
func (b *Browser) NewTab(t testing.TB) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	tab := &Tab{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, tab.record); err != nil {
		t.Fatalf("browsertest: open tab: %v", err)
	}
	return tab
}

// record keeps console messages and uncaught exceptions. It runs on the
// tab's reader goroutine, so it only appends.
func (tab *Tab) record(ev any) {
	var line string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		line = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " "))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		if d == nil {
			return
		}
		line = fmt.Sprintf("uncaught at %s:%d: %s", d.URL, d.LineNumber+1, d.Text)
		if d.Exception != nil {
			line += " " + d.Exception.Description
		}
	default:
		return
	}
	tab.mu.Lock()
	tab.console = append(tab.console, line)
	tab.mu.Unlock()
}

// Console returns the console messages and page errors seen so far.
func (tab *Tab) Console() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return append([]string(nil), tab.console...)
}

// Context returns the tab's chromedp context, for actions that return
// values (chromedp.Run) or run without a deadline.
func (tab *Tab) Context() context.Context { return tab.ctx }

// Run runs the actions in order, each Run bounded by DefaultTimeout. On an
// error it saves a screenshot and fails the test with the page's console.
func (tab *Tab) Run(actions ...chromedp.Action[chromedp.Void]) {
	tab.t.Helper()
	if err := tab.Try(actions...); err != nil {
		shot := tab.Screenshot("failure")
		tab.t.Fatalf("browsertest: %v\nscreenshot: %s\nconsole:\n  %s", err, shot, strings.Join(tab.Console(), "\n  "))
	}
}

// Try is Run that returns the error instead of failing the test.
func (tab *Tab) Try(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(tab.ctx, DefaultTimeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// Eval evaluates a JavaScript expression in the tab and decodes its value
// into T, awaiting it when it is a promise.
func Eval[T any](tab *Tab, expression string) (T, error) {
	ctx, cancel := context.WithTimeout(tab.ctx, DefaultTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expression, chromedp.EvalAwaitPromise))
}

// Screenshot saves the tab's full page as name.png in the test's artifact
// folder and returns its path ("" when the capture itself failed, which is
// logged).
func (tab *Tab) Screenshot(name string) string {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, DefaultTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tab.t.Logf("browsertest: screenshot %s: %v", name, err)
		return ""
	}
	tab.mu.Lock()
	if tab.dir == "" {
		tab.dir = ArtifactDir(tab.t)
	}
	dir := tab.dir
	tab.mu.Unlock()
	path := filepath.Join(dir, sanitize(name)+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tab.t.Logf("browsertest: save screenshot: %v", err)
		return ""
	}
	tab.t.Logf("browsertest: screenshot %s", path)
	return path
}

// ArtifactDir returns the folder for t's artifacts: $CONCORD_TEST_ARTIFACTS
// followed by the test's name when the variable is set, else a temporary
// folder of the test.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	root := os.Getenv(ArtifactsEnv)
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, sanitize(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("browsertest: artifact folder: %v", err)
	}
	return dir
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func sanitize(name string) string { return unsafeChars.ReplaceAllString(name, "_") }
