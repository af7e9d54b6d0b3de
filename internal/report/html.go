package report

import (
	_ "embed"
	"encoding/json"
	"html/template"
	"io"
)

//go:embed report.html.tmpl
var pageSource string

var page = template.Must(template.New("report.html").Parse(pageSource))

// chartData is what the page's script draws, embedded as JSON.
type chartData struct {
	Names [2]string   `json:"names"`
	Hours []chartHour `json:"hours"`
	Top   []chartAd   `json:"top"`
}

// chartHour is one hour: its start in epoch ms, the decisions and the
// budget moved of each side (baseline first).
type chartHour struct {
	T int64      `json:"t"`
	D [2]int     `json:"d"`
	M [2]float64 `json:"m"`
}

type chartAd struct {
	ID     string `json:"id"`
	Gained int    `json:"gained"`
	Lost   int    `json:"lost"`
}

// WriteHTML writes report.html: one self-contained page (inline style,
// script and data; it fetches nothing) with three SVG charts drawn by its
// script and the tables of report.md.
//
// The page records script errors in <pre id="errors">, marks each chart's
// svg with data-rendered (the number of marks drawn) and sets the body's
// data-status to "ok" once every chart is drawn without an error.
func (d *Diff) WriteHTML(w io.Writer) error {
	cd := chartData{Names: [2]string{d.Baseline.Name, d.Candidate.Name}, Hours: []chartHour{}, Top: []chartAd{}}
	for _, h := range d.Hours {
		cd.Hours = append(cd.Hours, chartHour{
			T: int64(h.Hour),
			D: [2]int{h.Baseline.Decisions, h.Candidate.Decisions},
			M: [2]float64{h.Baseline.BudgetMoved, h.Candidate.BudgetMoved},
		})
	}
	for _, a := range d.TopAds {
		cd.Top = append(cd.Top, chartAd{ID: a.AdID, Gained: len(a.Gained), Lost: len(a.Lost)})
	}
	// encoding/json escapes <, >, &, U+2028 and U+2029, so no string in
	// the data can end the script element or the script.
	data, err := json.Marshal(cd)
	if err != nil {
		return err
	}
	v := d.view()
	v.Data = template.JS(data)
	return page.Execute(w, v)
}
