package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// progress draws a bar on a terminal; elsewhere it stays silent, so logs
// and pipes get only the report.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	total int
	on    bool
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && total > 0 {
			p.on = true
		}
	}
	return p
}

func (p *progress) update(done int) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	const width = 40
	frac := float64(done) / float64(p.total)
	frac = min(frac, 1)
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %d/%d decisions", strings.Repeat("=", n), strings.Repeat(" ", width-n), frac*100, done, p.total)
}

func (p *progress) done() {
	if p.on {
		fmt.Fprintln(p.w)
	}
}
