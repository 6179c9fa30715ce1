package browsertest_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/concord-macp/concord/internal/browsertest"
)

func TestTabRunsPageAndSavesScreenshot(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><title>t</title><p id="p">waiting</p>
<script>console.log("hello", 42); setTimeout(() => { document.getElementById("p").textContent = "ready" }, 50)</script>`))
	}))
	defer page.Close()
	t.Setenv(browsertest.ArtifactsEnv, t.TempDir())

	tab := browsertest.Start(t).NewTab(t)
	tab.Run(chromedp.Navigate(page.URL), chromedp.Poll[chromedp.Void](`document.getElementById("p").textContent === "ready"`))
	sum, err := browsertest.Eval[int](tab, `Promise.resolve(40 + 2)`)
	if err != nil || sum != 42 {
		t.Fatalf("Eval = %d, %v", sum, err)
	}
	if got := strings.Join(tab.Console(), "\n"); !strings.Contains(got, `console.log: "hello" 42`) {
		t.Fatalf("console = %q", got)
	}
	shot := tab.Screenshot("page")
	b, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("screenshot %q: %v", shot, err)
	}
	if !strings.HasPrefix(shot, os.Getenv(browsertest.ArtifactsEnv)) {
		t.Fatalf("screenshot %s is outside %s", shot, browsertest.ArtifactsEnv)
	}
	// A failing action is reported as an error by Try.
	if err := tab.Try(chromedp.Evaluate[chromedp.Void](`nosuchfunction()`)); err == nil {
		t.Fatal("Try of a throwing expression succeeded")
	}
}
