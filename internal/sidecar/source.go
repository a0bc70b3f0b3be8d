package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/keyward-dev/keyward/internal/bundle"
)

// Bundle source labels (metric label "source").
const (
	SourceDir       = "dir"
	SourceConfigMap = "configmap"
)

// DefaultResyncInterval is how often the directory source re-reads the bundle even
// without a file-system event.
const DefaultResyncInterval = 10 * time.Second

// DirSource reads the bundle from a mounted ConfigMap directory (DIR/bundle.json, with the
// kubelet's atomic layout: bundle.json -> ..data/bundle.json, ..data -> a timestamped
// directory swapped by a rename). It re-reads on every fsnotify event in DIR and every
// Interval.
type DirSource struct {
	Dir      string
	Interval time.Duration // 0: DefaultResyncInterval
	Store    *Store
	Clock    clock.WithTicker
	Log      logr.Logger
}

// Sync reads the bundle once and offers it to the store.
func (s *DirSource) Sync() error {
	data, err := readLimited(filepath.Join(s.Dir, bundle.DataKey), bundle.MaxBytes)
	if err != nil {
		s.Store.Refuse(SourceDir, "read", err)
		return &RefusalError{Reason: "read", Err: err}
	}
	return s.Store.Offer(SourceDir, data)
}

// readLimited reads at most limit+1 bytes, so an oversized file is refused by
// bundle.Decode without being read whole.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

// Run syncs at once, then on every file-system event and every Interval until ctx is done.
func (s *DirSource) Run(ctx context.Context) error {
	interval := s.Interval
	if interval <= 0 {
		interval = DefaultResyncInterval
	}
	var events chan fsnotify.Event
	var errs chan error
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.Log.Error(err, "Could not start the file watcher; re-reading the bundle periodically only", "interval", interval)
	} else {
		defer func() { _ = w.Close() }()
		events, errs = w.Events, w.Errors
	}
	watching := false
	watch := func() {
		if w == nil || watching {
			return
		}
		// Watching the directory (not the files) sees the kubelet's ..data rename.
		if err := w.Add(s.Dir); err != nil {
			s.Log.Error(err, "Could not watch the bundle directory; will retry", "dir", s.Dir)
			return
		}
		watching = true
	}
	watch()
	_ = s.Sync()
	ticker := s.Clock.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Name == s.Dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				watching = false // the directory itself went away; re-add on the next tick
			}
			_ = s.Sync()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			s.Log.Error(err, "File watcher reported an error", "dir", s.Dir)
		case <-ticker.C():
			watch()
			_ = s.Sync()
		}
	}
}

// ConfigMapSource watches one ConfigMap by name through the API server (list+watch with
// a field selector on metadata.name, re-listing after watch failures) and offers its
// bundle.json on every change.
type ConfigMapSource struct {
	Client          kubernetes.Interface
	Namespace, Name string
	Store           *Store
	Log             logr.Logger
}

// Run watches until ctx is done.
func (s *ConfigMapSource) Run(ctx context.Context) error {
	if s.Namespace == "" || s.Name == "" {
		return errors.New("the bundle ConfigMap needs a namespace and a name")
	}
	selector := fields.OneTermEqualSelector("metadata.name", s.Name).String()
	cms := s.Client.CoreV1().ConfigMaps(s.Namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return cms.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return cms.Watch(ctx, o)
		},
	}
	logger := s.Log
	_, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		Logger:        &logger,
		ListerWatcher: lw,
		ObjectType:    &corev1.ConfigMap{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.offer(obj) },
			UpdateFunc: func(_, obj any) { s.offer(obj) },
			DeleteFunc: func(any) {
				s.Store.Refuse(SourceConfigMap, "deleted", fmt.Errorf("ConfigMap %s/%s was deleted", s.Namespace, s.Name))
			},
		},
	})
	ctrl.RunWithContext(ctx)
	return nil
}

func (s *ConfigMapSource) offer(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || cm.Name != s.Name {
		return
	}
	data, ok := cm.Data[bundle.DataKey]
	if !ok {
		s.Store.Refuse(SourceConfigMap, "missing_key",
			fmt.Errorf("ConfigMap %s/%s has no %q key", cm.Namespace, cm.Name, bundle.DataKey))
		return
	}
	_ = s.Store.Offer(SourceConfigMap, []byte(data))
}
