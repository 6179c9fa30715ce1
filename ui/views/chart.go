package views

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Chart geometry, in SVG user units.
const (
	chartW, chartH   = 600.0, 150.0
	padLeft, padTop  = 40.0, 8.0
	padRight, padBot = 8.0, 22.0
)

// Max is the chart's top value: the largest value, rounded up to a nice
// number, and at least 1.
func (c Chart) Max() float64 {
	top := 0.0
	for _, s := range c.Series {
		for _, v := range s.Values {
			top = math.Max(top, v)
		}
	}
	if top <= 1 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(top)))
	for _, step := range []float64{1, 2, 2.5, 5, 10} {
		if top <= step*mag {
			return step * mag
		}
	}
	return 10 * mag
}

// Points returns the SVG polyline points of series i.
func (c Chart) Points(i int) string {
	vals := c.Series[i].Values
	if len(vals) == 0 {
		return ""
	}
	top := c.Max()
	w := chartW - padLeft - padRight
	h := chartH - padTop - padBot
	var b strings.Builder
	for j, v := range vals {
		x := padLeft
		if len(vals) > 1 {
			x += w * float64(j) / float64(len(vals)-1)
		}
		y := padTop + h - h*v/top
		fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
	}
	return strings.TrimSpace(b.String())
}

// ViewBox is the SVG viewBox.
func (c Chart) ViewBox() string { return fmt.Sprintf("0 0 %.0f %.0f", chartW, chartH) }

// MaxLabel is the label of the top of the value axis.
func (c Chart) MaxLabel() string { return formatNumber(c.Max()) }

func formatNumber(v float64) string {
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// Axis coordinates, for the template.
func (Chart) X0() string   { return ftoa(padLeft) }
func (Chart) X1() string   { return ftoa(chartW - padRight) }
func (Chart) YTop() string { return ftoa(padTop) }
func (Chart) YBot() string { return ftoa(chartH - padBot) }

// LabelY is the baseline of the time labels.
func (Chart) LabelY() string { return ftoa(chartH - 6) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
