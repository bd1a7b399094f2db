package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// lifecycle collects named cleanups during setup and runs them in reverse.
type lifecycle struct {
	logger *slog.Logger
	names  []string
	fns    []func(context.Context) error
}

func (l *lifecycle) add(name string, fn func(context.Context) error) {
	l.names = append(l.names, name)
	l.fns = append(l.fns, fn)
}

// stop runs the cleanups in reverse order and joins their errors.
func (l *lifecycle) stop(ctx context.Context) error {
	var errs []error
	for i := len(l.fns) - 1; i >= 0; i-- {
		l.logger.Debug("stopping", "part", l.names[i])
		if err := l.fns[i](ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", l.names[i], err))
		}
	}
	return errors.Join(errs...)
}
