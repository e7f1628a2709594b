"""A drawing as one HTML page: the SVG inline, the list of changes, zoom and pan."""
from __future__ import annotations

from keras_rewrite.analysis.picture.drawing import Drawing
from keras_rewrite.analysis.picture.style import COLORS, CSS_CLASSES, LEGEND, STRIPES
from keras_rewrite.analysis.picture.svg import _attr, to_svg


_PAGE_CSS = """
html,body{margin:0;height:100%;font-family:"DejaVu Sans",Verdana,Arial,sans-serif;font-size:13px}
body{display:flex}
#panel{width:360px;min-width:360px;height:100%;overflow:auto;border-right:1px solid #ccc;
  box-sizing:border-box;padding:10px 12px;background:#fafafa}
#panel h1{font-size:15px;margin:0 0 6px 0;word-break:break-all}
#panel .summary{margin:0 0 8px 0;color:#333}
#panel .help{color:#555;font-size:12px;margin:6px 0}
#panel ol{padding-left:0;margin:6px 0;list-style:none}
#panel li{margin:0 0 4px 0;padding:3px 5px 3px 8px;border-left:6px solid #ccc;background:#fff}
#panel li a{color:#123;text-decoration:none;font-weight:bold;word-break:break-all}
#panel li .cls{color:#555;font-weight:normal}
#panel li .what{color:#444;font-size:12px;word-break:break-word}
#panel li.current{outline:2px solid #e0301e}
#panel .legend span{display:inline-block;margin:0 8px 3px 0;white-space:nowrap}
#panel .legend i{display:inline-block;width:14px;height:10px;margin-right:4px;
  border:1px solid #999;vertical-align:middle}
#panel .filters label{margin-right:8px;white-space:nowrap}
#panel #detail:empty{display:none}
#panel #detail{white-space:pre-wrap;font-family:monospace;font-size:11px;background:#fff;
  border:1px solid #ddd;padding:4px;max-height:220px;overflow:auto}
#view{flex:1;position:relative;overflow:auto;background:white}
#view.zoomable{overflow:hidden;cursor:grab}
#view.zoomable.dragging{cursor:grabbing}
#tools{position:absolute;right:12px;top:10px;z-index:2}
#tools button{font-size:14px;min-width:34px;margin-left:3px;padding:3px 6px}
#view svg{display:block}
"""

_PAGE_SCRIPT = r"""
(function(){
var view=document.getElementById('view'), svg=view.querySelector('svg');
var W=+svg.getAttribute('width'), H=+svg.getAttribute('height');
var s={x:0,y:0,k:1};
view.classList.add('zoomable');
function apply(){
  var vw=view.clientWidth, vh=view.clientHeight;
  svg.setAttribute('width',vw); svg.setAttribute('height',vh);
  svg.setAttribute('viewBox',s.x+' '+s.y+' '+(vw/s.k)+' '+(vh/s.k));
}
function zoomAt(f,cx,cy){
  var k=Math.min(8,Math.max(0.02,s.k*f));
  s.x=cx/s.k+s.x-cx/k; s.y=cy/s.k+s.y-cy/k; s.k=k; apply();
}
function fit(){
  var vw=view.clientWidth, vh=view.clientHeight;
  s.k=Math.min(vw/W,vh/H); s.x=-(vw/s.k-W)/2; s.y=0; apply();
}
function start(){
  var vw=view.clientWidth;
  s.k=Math.min(1,vw/W); s.x=Math.min(0,-(vw/s.k-W)/2); s.y=0; apply();
}
function describe(g){  // a run lists every layer it holds (its tooltip stops at 60)
  var names=g.getAttribute('data-layers'), d=document.getElementById('detail');
  d.textContent=names ? names.split(' ').length+' unchanged layers:\n'+names.split(' ').join('\n')
                      : g.querySelector('title').textContent;
}
function goTo(key){
  var g=document.getElementById(key); if(!g) return;
  var r=g.querySelector('rect.body'), bx=+r.getAttribute('x'), by=+r.getAttribute('y');
  var bw=+r.getAttribute('width'), bh=+r.getAttribute('height');
  if(s.k<0.8) s.k=1;
  s.x=bx+bw/2-view.clientWidth/(2*s.k); s.y=by+bh/2-view.clientHeight/(2*s.k); apply();
  var old=document.querySelectorAll('.highlight,.current');
  for(var i=0;i<old.length;i++) old[i].classList.remove('highlight','current');
  g.classList.add('highlight');
  var li=document.querySelector('li[data-box="'+key+'"]');
  if(li){ li.classList.add('current'); li.scrollIntoView({block:'nearest'}); }
}
view.addEventListener('wheel',function(e){
  e.preventDefault(); var b=view.getBoundingClientRect();
  zoomAt(Math.exp(-e.deltaY*0.0015),e.clientX-b.left,e.clientY-b.top);
},{passive:false});
var drag=null;
view.addEventListener('mousedown',function(e){
  drag={x:e.clientX,y:e.clientY,sx:s.x,sy:s.y,moved:false}; view.classList.add('dragging');});
window.addEventListener('mousemove',function(e){ if(!drag) return;
  var dx=e.clientX-drag.x, dy=e.clientY-drag.y;
  if(Math.abs(dx)+Math.abs(dy)>3) drag.moved=true;
  s.x=drag.sx-dx/s.k; s.y=drag.sy-dy/s.k; apply();});
window.addEventListener('mouseup',function(){ view.classList.remove('dragging');
  setTimeout(function(){drag=null;},0);});
svg.addEventListener('click',function(e){
  if(drag&&drag.moved) return;
  var g=e.target.closest('.node'); if(g) describe(g);
});
document.getElementById('panel').addEventListener('click',function(e){
  var a=e.target.closest('a[data-box]'); if(!a) return; e.preventDefault();
  goTo(a.getAttribute('data-box')); describe(document.getElementById(a.getAttribute('data-box')));
});
var filters=document.querySelectorAll('.filters input');
for(var i=0;i<filters.length;i++) filters[i].addEventListener('change',function(){
  var shown={}; for(var j=0;j<filters.length;j++) shown[filters[j].value]=filters[j].checked;
  var items=document.querySelectorAll('#changes li');
  for(var j=0;j<items.length;j++){
    var kinds=items[j].getAttribute('data-kinds').split(' '), on=false;
    for(var m=0;m<kinds.length;m++) if(shown[kinds[m]]) on=true;
    items[j].style.display=on?'':'none';}
});
function tool(id,f){document.getElementById(id).addEventListener('click',f);}
tool('zoom-in',function(){zoomAt(1.25,view.clientWidth/2,view.clientHeight/2);});
tool('zoom-out',function(){zoomAt(0.8,view.clientWidth/2,view.clientHeight/2);});
tool('zoom-fit',fit); tool('zoom-one',start);
window.addEventListener('keydown',function(e){
  if(e.key==='+'||e.key==='=') zoomAt(1.25,view.clientWidth/2,view.clientHeight/2);
  else if(e.key==='-') zoomAt(0.8,view.clientWidth/2,view.clientHeight/2);
  else if(e.key==='0') fit(); else if(e.key==='1') start();
});
window.addEventListener('resize',apply);
function fromHash(){
  var h=decodeURIComponent(location.hash.slice(1)), g=null; if(!h) return;
  if(h==='first'){ var a=document.querySelector('#changes a[data-box]');
    if(a) g=document.getElementById(a.getAttribute('data-box')); }
  else if(/^n[0-9]+$/.test(h)) g=document.getElementById(h);
  var all=svg.querySelectorAll('.node');
  for(var i=0;!g&&i<all.length;i++){
    var n=all[i];
    if(n.getAttribute('data-id')===h||n.getAttribute('data-layer')===h||
       (' '+(n.getAttribute('data-layers')||'')+' ').indexOf(' '+h+' ')>=0) g=n; }
  if(g){ goTo(g.id); describe(g); }
}
start(); fromHash(); window.addEventListener('hashchange',fromHash);
})();
"""


def to_html(drawing: Drawing) -> str:
    """The drawing as one HTML page: the SVG inline, the list of changes linking to their
    boxes, a legend, zoom and pan. Inline CSS and script only: it works offline."""
    svg = to_svg(drawing).split("\n", 1)[1]  # no XML declaration inside HTML
    panel = [f"<h1>{_attr(drawing.title)}</h1>"]
    if drawing.summary != drawing.title:
        panel.append(f'<p class="summary">{_attr(drawing.summary)}</p>')
    if drawing.is_diff:
        legend = "".join(f'<span><i style="background:{COLORS[k]};border-left:4px solid '
                         f'{STRIPES[k]}"></i>{_attr(LEGEND[k])}</span>' for k in LEGEND)
        panel.append(f'<div class="legend">{legend}<span><i style="background:'
                     f'{COLORS["run"]}"></i>unchanged, collapsed</span></div>')
    panel.append('<p class="help">Click a box for its details; drag to pan; wheel or + / - '
                 'to zoom, 0 to fit, 1 for full size; #LAYER after the address opens at that '
                 'layer.</p><div id="detail"></div>')
    if drawing.is_diff:
        present = [k for k in LEGEND if any(k in c.kinds for _, c in drawing.changes)]
        if present:
            boxes = "".join(f'<label><input type="checkbox" value="{k}" checked> {k}</label>'
                            for k in present)
            panel.append(f'<div class="filters">show: {boxes}</div>')
        panel.append(f"<p>{len(drawing.changes)} changed layer"
                     f"{'' if len(drawing.changes) == 1 else 's'} (click one to go to it):</p>")
        items = []
        for key, change in drawing.changes:
            kinds = " ".join(change.kinds)
            css = " ".join(CSS_CLASSES[k] for k in change.kinds)
            what = _attr("; ".join(change.details(width=80)))
            items.append(f'<li class="{css}" data-kinds="{kinds}" data-box="{key}" '
                         f'style="border-left-color:{STRIPES[change.kinds[0]]}">'
                         f'<a href="#{key}" data-box="{key}">{_attr(change.id)} '
                         f'<span class="cls">({_attr(change.class_name)})</span></a>'
                         f'<div class="what">{what}</div></li>')
        panel.append(f'<ol id="changes">{"".join(items)}</ol>')
    tools = ('<div id="tools"><button id="zoom-in" title="zoom in (+)">+</button>'
             '<button id="zoom-out" title="zoom out (-)">−</button>'
             '<button id="zoom-fit" title="fit (0)">fit</button>'
             '<button id="zoom-one" title="full size (1)">1:1</button></div>')
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_attr(drawing.title)}</title>", f"<style>{_PAGE_CSS}</style></head>",
        f'<body><aside id="panel">{"".join(panel)}</aside>',
        f'<main id="view">{tools}{svg}</main>', f"<script>{_PAGE_SCRIPT}</script>",
        "</body></html>"]) + "\n"
