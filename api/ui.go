package api

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"

	"github.com/gin-gonic/gin"
)

// The web UI: static files that call the API with the signed-in key. They
// are embedded in the binary and served under /ui/.
//
//go:embed ui
var uiFiles embed.FS

// uiAsset is one file of the UI, read once at start.
type uiAsset struct {
	body  []byte
	etag  string
	ctype string
}

// uiSecurity keeps the UI's pages to their own scripts and styles, so text
// from an instance can never run as code, and out of other sites' frames.
var uiSecurity = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	"X-Content-Type-Options":  "nosniff",
	"X-Frame-Options":         "DENY",
	"Referrer-Policy":         "no-referrer",
}

func loadUI() (map[string]uiAsset, error) {
	assets := map[string]uiAsset{}
	err := fs.WalkDir(uiFiles, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := uiFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		assets[p[len("ui/"):]] = uiAsset{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
		return nil
	})
	return assets, err
}

// uiRoutes serves the UI at /ui/ and sends / there. The files are public:
// what they show comes from the API, which checks the key of every call.
func uiRoutes(r *gin.Engine) error {
	assets, err := loadUI()
	if err != nil {
		return err
	}
	r.GET("/", func(c *gin.Context) { c.Redirect(http.StatusFound, "/ui/") })
	r.GET("/ui", func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/ui/") })
	r.GET("/ui/*file", func(c *gin.Context) {
		name := c.Param("file")[1:]
		if name == "" {
			name = "index.html"
		}
		a, ok := assets[name]
		if !ok {
			fail(c, &httpError{status: http.StatusNotFound, code: "not_found", msg: "no file " + name + " in the web UI"})
			return
		}
		for k, v := range uiSecurity {
			c.Header(k, v)
		}
		// Revalidated on each load, so a new binary's UI is seen at once.
		c.Header("Cache-Control", "no-cache")
		c.Header("ETag", a.etag)
		c.Header("Content-Type", a.ctype)
		http.ServeContent(c.Writer, c.Request, "", time.Time{}, bytes.NewReader(a.body))
	})
	return nil
}
