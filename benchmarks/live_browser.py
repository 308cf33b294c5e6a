"""The live preview measured in the browser: `benchmarks/live_speed.py --browser`.

What it does
------------
1. A FACELAB_HOME with the bundled sample workspace (`facelab.sample.ensure_sample`: crops, the
   shipped β-VAE, labels, the smile direction), as tests/test_browser_webcam.py uses.
2. A fake camera: a 640x480 .y4m at `--camera-fps` (default 30) made from the sample clip
   (letterboxed, played forward then backward so the loop has no jump), each frame stamped with
   its own number in the bottom black bar, below anything the pipeline draws (it draws down to
   row ~426 on this clip): 12 blocks 48 x 16 px holding the bits of the number (white = 1) and,
   under them, the same blocks inverted. A reader compares each block with the one under it, so
   it needs no threshold and refuses a frame whose code was blurred or covered.
3. Inside a private network namespace (tests/fakecam.py's `network_namespace`, the only place
   WebRTC may run here): `streamlit run` (tests/conftest.py's `streamlit_server`) and headless
   Chromium with the fake camera; the Webcam page; START (tests/fakecam.py's `start_camera`).
4. For `--seconds` per stream (`--repeats` streams, each a fresh Chromium and connection, after
   `--settle` seconds of streaming), two `requestVideoFrameCallback` loops in the component's
   iframe read the frame number of every frame presented by
     - the processed <video> the page shows (what came back from the server), and
     - a plain local preview: a <video> the benchmark adds, playing the very camera track the
       page sends (hooked at `RTCPeerConnection.addTrack`; the page itself shows no preview).
   Each read keeps the frame's expected display time, and Chromium's `captureTime` (local
   frames) and `receiveTime` (remote frames), all on the wall clock.
5. In the server, probes installed through a `sitecustomize` on PYTHONPATH (only the streamlit
   process installs them) log each frame, by the number in its pixels, on the wall clock:
     dec    aiortc's VP8 (or H.264) decoder produced the camera frame;
     in     the processing track took it (through aiortc's track queue and a MediaRelay queue);
     cb     streamlit-webrtc's frame callback ran, `proc` its `LivePipeline.process` and stages
            (a `cb` without `proc`: a frame the page's LateFrames skipped as late), `queued`
            which frames async processing found waiting (it keeps only the newest);
     out    the processed frame was passed on (at once in sync processing, the page's mode;
            streamlit-webrtc's async track does it when the next camera frame arrives);
     relay  the sender took it from the MediaRelay queue between the processing track and the
            peer connection (with how many frames were still waiting there);
     enc    aiortc encoded it;
   and every second the CPU time of each of its threads (and of the threads that came and went:
   Streamlit runs each page rerun in a new thread). The benchmark also reads the CPU time of the
   whole machine, the server and Chromium around each stream, so a run says how quiet it was.

How the figures are made
------------------------
- frames shown per second: distinct frame numbers the processed <video> presented / seconds.
- camera frame rate: the .y4m's nominal fps, and what the local preview presented.
- camera time of frame k: Chromium's `captureTime` of k in the local preview (else the
  preview's display time of k); for a frame the preview did not present (e.g. captured before
  the preview started), k / fps + offset, the offset the median of (preview time − k / fps).
  Frame numbers repeat every 20 s (the file loops): each read is placed in its loop by the
  preview's frame at that moment, so delays must stay under ~20 s.
- delay: display time of k in the processed video − camera time of k; the same for the plain
  preview (a few ms to a frame); the added delay is the processed delay − the preview's median
  (what processing adds over a plain camera preview). The last line gives its median.
- where the time goes: the differences between consecutive records above, per frame that was
  shown and seen at every step (Chromium's `receiveTime` splits the last step into send and
  Chromium's jitter buffer + decode + render).
  Server and browser times meet on the wall clock; Chromium's `performance.timeOrigin` may sit
  a few ms off Python's `time.time()`, so a cross-process step is good to a few ms (a small
  negative median can appear).
- where frames go: frames per second decoded in the server, processed, encoded, shown.
- frames shown per second also second by second (median and p10: the low tail is the bad one).
Each delay as median and p90; the ratio to the targets (>= 20 fps, <= 100 ms added, quiet).

What-ifs (`--what-if`, `WHAT_IFS`): the server runs with one change patched in at import, to
measure what it is worth; the output says so in capitals. They are experiments, not the app.

The page is a real one: its map redraws every few seconds while the camera runs, as it does for
a user. The benchmark's own reads cost a small canvas read per presented frame in the browser and
a few hundred pixels and a log line per record in the server.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
TESTS = REPO / "tests"
for p in (str(REPO), str(TESTS)):
    if p not in sys.path:
        sys.path.insert(0, p)

W, H = 640, 480
# the frame number's code: two rows of BITS blocks in the bottom letterbox bar (data, inverted)
BITS, X0, BW, CODE_Y, ROW_H = 12, 32, 48, 448, 16
MIN_CONTRAST = 40  # a block and its inverse must differ by this much (0-255) to be read
TARGET_FPS, TARGET_ADDED_MS = 20.0, 100.0
PROBE_ENV = "FACELAB_LIVE_PROBE_LOG"
STACKS_ENV = "FACELAB_LIVE_PROBE_STACKS"  # a path: also sample the server's thread stacks there
WHAT_IF_ENV = "FACELAB_LIVE_WHAT_IF"  # comma-separated WHAT_IFS the server runs with
WHAT_IFS = {
    "no-page-timers": "the page's fragments never rerun on a timer (the live map and the recording "
                      "panel stay as first drawn)",
    "unbuffered-relay": "every aiortc MediaRelay keeps only its newest frame instead of an unbounded queue",
}


# --- the frame number in pixels ------------------------------------------------------------
def stamp(frame_bgr: np.ndarray, k: int) -> None:
    """Write k's code into a 640x480 frame's bottom rows (in place)."""
    for i in range(BITS):
        bit = (k >> i) & 1
        x = X0 + BW * i
        frame_bgr[CODE_Y:CODE_Y + ROW_H, x:x + BW] = 255 * bit
        frame_bgr[CODE_Y + ROW_H:CODE_Y + 2 * ROW_H, x:x + BW] = 255 * (1 - bit)


def read_number(luma: np.ndarray, height: int | None = None) -> int:
    """The frame number coded in a frame's luma, or -1 if unreadable. Any frame size (positions
    scale); `luma` may be only the frame's bottom rows (`code_rows`) of a frame `height` high."""
    h = height or luma.shape[0]
    top = h - luma.shape[0]
    w = luma.shape[1]
    sy, sx = h / H, w / W
    k, worst = 0, 255.0
    for i in range(BITS):
        xa = int((X0 + BW * i + 12) * sx)
        xb = max(int((X0 + BW * i + 36) * sx), xa + 1)
        ya0 = int((CODE_Y + 4) * sy) - top
        ya1 = max(int((CODE_Y + 12) * sy) - top, ya0 + 1)
        yb0 = int((CODE_Y + ROW_H + 4) * sy) - top
        yb1 = max(int((CODE_Y + ROW_H + 12) * sy) - top, yb0 + 1)
        a = float(luma[ya0:ya1, xa:xb].mean())
        b = float(luma[yb0:yb1, xa:xb].mean())
        worst = min(worst, abs(a - b))
        if a > b:
            k |= 1 << i
    return k if worst >= MIN_CONTRAST else -1


def code_rows(h: int) -> int:
    """The first row of an h-high frame that `read_number` needs (so probes copy only those)."""
    return int(CODE_Y * h / H)


def number_of_av(frame) -> int:
    """The frame number of an `av.VideoFrame` (yuv420p from aiortc, bgr24 from the callback),
    read from its bottom rows only."""
    try:
        h, w = frame.height, frame.width
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[code_rows(h):h]
        name = frame.format.name
        if name in ("yuv420p", "yuvj420p", "nv12", "gray"):
            return read_number(rows[:, :w], h)
        if name in ("bgr24", "rgb24"):
            return number_of_bgr(rows[:, :w * 3].reshape(len(rows), w, 3), h)
        return read_number(frame.to_ndarray(format="gray"))
    except Exception:
        return -1


def number_of_bgr(frame: np.ndarray, height: int | None = None) -> int:
    """The frame number of a BGR frame (or of its bottom rows, with the frame's `height`)."""
    if height is None:
        height = frame.shape[0]
        frame = frame[code_rows(height):]
    return read_number(frame[..., 1] if frame.ndim == 3 else frame, height)  # green: the code is grey


def write_numbered_y4m(clip: Path, dest: Path, fps: int = 30, seconds: float = 10.0,
                       start_s: float = 1.0) -> tuple[Path, int]:
    """A 640x480 `fps` .y4m of `seconds` (the clip from `start_s` forward for half of it, then
    back), every frame stamped with its number; returns (path, frames)."""
    import cv2

    n = int(round(fps * seconds))
    cap = cv2.VideoCapture(str(clip))
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 24.0
    want = [int(round((start_s + min(k, n - k) / fps) * src_fps)) for k in range(n)]
    picked: dict[int, np.ndarray] = {}
    i = 0
    while i <= max(want):
        ok, frame = cap.read()
        if not ok:
            break
        if i in want:
            picked[i] = frame
        i += 1
    cap.release()
    if not picked:
        raise RuntimeError(f"could not read {clip}")
    last = max(picked)
    with dest.open("wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for k, src in enumerate(want):
            frame = picked[min(src, last)]
            scale = min(W / frame.shape[1], H / frame.shape[0])
            fw, fh = round(frame.shape[1] * scale), round(frame.shape[0] * scale)
            canvas = np.zeros((H, W, 3), np.uint8)
            y0, x0 = (H - fh) // 2, (W - fw) // 2
            canvas[y0:y0 + fh, x0:x0 + fw] = cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_AREA)
            if y0 + fh > CODE_Y:
                raise RuntimeError("the clip leaves no bar at the bottom for the frame number")
            stamp(canvas, k)
            f.write(b"FRAME\n" + cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).tobytes())
    return dest, n


# --- probes inside the streamlit server ------------------------------------------------------
SITECUSTOMIZE = f"""import os, sys
if os.environ.get({PROBE_ENV!r}):
    sys.path.insert(0, {str(BENCH)!r})
    import live_browser
    live_browser.install_probes(os.environ.pop({PROBE_ENV!r}))
"""


class _Log:
    def __init__(self, path: str) -> None:
        self._f = open(path, "a", buffering=1)
        self._lock = threading.Lock()

    def __call__(self, kind: str, **fields) -> None:
        line = json.dumps({"kind": kind, **fields})
        with self._lock:
            self._f.write(line + "\n")


def install_probes(log_path: str) -> None:
    """Patch, as they are imported, the three places a frame passes in the server (see the module
    docstring); each writes one JSON line per frame to `log_path`."""
    import importlib.abc
    import importlib.machinery

    log = _Log(log_path)

    def patch_live(module) -> None:
        original = module.LivePipeline.process

        def process(self, frame_bgr):
            t0 = time.time()
            result = original(self, frame_bgr)
            log("proc", k=number_of_bgr(frame_bgr), t0=t0, t1=time.time(),
                timings=result.timings, faces=len(result.boxes))
            return result

        module.LivePipeline.process = process

    def patch_models(module) -> None:
        cls = module.CallbackAttachableProcessor
        recv, recv_queued = cls.recv, cls.recv_queued

        def timed_recv(self, frame):  # the frame callback, in either processing mode
            t0 = time.time()
            out = recv(self, frame)
            log("cb", k=number_of_av(frame), t0=t0, t1=time.time())
            return out

        async def logged_recv_queued(self, frames):  # async mode: all but the newest are dropped
            log("queued", ks=[number_of_av(f) for f in frames], t=time.time())
            return await recv_queued(self, frames)

        cls.recv, cls.recv_queued = timed_recv, logged_recv_queued

    def patch_process(module) -> None:
        for cls in (module.MediaProcessTrack, module.AsyncMediaProcessTrack):  # sync, async mode
            patch_track(cls)

    def patch_track(cls) -> None:
        original = cls.recv

        async def recv(self):
            if not getattr(self, "_fl_probed", False):
                self._fl_probed = True
                inner = self.track.recv

                async def track_recv():
                    frame = await inner()
                    log("in", k=number_of_av(frame), t=time.time())
                    return frame

                self.track.recv = track_recv
            out = await original(self)
            if out is not None and getattr(out, "format", None) is not None:
                log("out", k=number_of_av(out), t=time.time(), processed=out.format.name == "bgr24")
            return out

        cls.recv = recv

    def patch_codecs(encoder: str, decoder: str):
        def patch(module) -> None:
            enc, dec = getattr(module, encoder), getattr(module, decoder)
            encode, decode = enc.encode, dec.decode

            def timed_encode(self, frame, *args, **kwargs):
                t0 = time.time()
                out = encode(self, frame, *args, **kwargs)
                log("enc", k=number_of_av(frame), t0=t0, t1=time.time())
                return out

            def timed_decode(self, encoded, *args, **kwargs):
                t0 = time.time()
                frames = decode(self, encoded, *args, **kwargs)
                t1 = time.time()
                for f in frames:
                    log("dec", k=number_of_av(f), t0=t0, t1=t1)
                return frames

            enc.encode, dec.decode = timed_encode, timed_decode

        return patch

    def patch_relay(module) -> None:
        original = module.RelayStreamTrack.recv

        async def recv(self):
            frame = await original(self)
            if getattr(frame, "format", None) is not None and frame.format.name == "bgr24":
                # a processed frame leaving the relay's queue for the sender (the camera's frames
                # go through a relay too, into the processing track: the "in" record)
                log("relay", k=number_of_av(frame), t=time.time(), queued=self._queue.qsize() if self._queue else 0)
            return frame

        module.RelayStreamTrack.recv = recv

    def no_page_timers(module) -> None:  # what-if: fragments never rerun on a timer
        original = module.fragment

        def fragment(func=None, *, run_every=None, **kwargs):
            return original(func, **kwargs)

        module.fragment = fragment

    def unbuffered_relay(module) -> None:  # what-if: every relay keeps only its newest frame
        original = module.MediaRelay.subscribe

        def subscribe(self, track, buffered=True):
            return original(self, track, False)

        module.MediaRelay.subscribe = subscribe

    patches = {"facelab.live": [patch_live], "streamlit_webrtc.models": [patch_models],
               "aiortc.contrib.media": [patch_relay],
               "streamlit_webrtc.process": [patch_process],
               "aiortc.codecs.vpx": [patch_codecs("Vp8Encoder", "Vp8Decoder")],
               "aiortc.codecs.h264": [patch_codecs("H264Encoder", "H264Decoder")]}
    what_if = set(filter(None, os.environ.pop(WHAT_IF_ENV, "").split(",")))
    if "no-page-timers" in what_if:
        patches["streamlit"] = [no_page_timers]
    if "unbuffered-relay" in what_if:
        patches["aiortc.contrib.media"].append(unbuffered_relay)

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in patches:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return None
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                for patch in patches[name]:
                    patch(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Finder())
    threading.Thread(target=_log_thread_cpu, args=(log,), daemon=True, name="fl-cpu-probe").start()
    if stacks := os.environ.pop(STACKS_ENV, ""):
        threading.Thread(target=_sample_stacks, args=(stacks,), daemon=True, name="fl-stack-sampler").start()


def _log_thread_cpu(log: _Log, every_s: float = 1.0) -> None:
    """Every second, the CPU seconds this process has used so far in all (`total`, with threads
    that have ended: Streamlit runs each page rerun, e.g. each map redraw, in a new thread) and
    per live thread (native id → [Python thread name, seconds]; threads Python does not know,
    torch's, OpenCV's, libvpx's, are `native`)."""
    tick = os.sysconf("SC_CLK_TCK")

    def used(stat: str) -> float:
        rest = stat[stat.rindex(")") + 2:].split()
        return (int(rest[11]) + int(rest[12])) / tick

    while True:
        names = {t.native_id: t.name for t in threading.enumerate()}
        threads: dict[str, list] = {}
        for task in Path("/proc/self/task").iterdir():
            try:
                threads[task.name] = [names.get(int(task.name), "native"), used((task / "stat").read_text())]
            except OSError:
                continue
        log("threads", t=time.time(), total=used(Path("/proc/self/stat").read_text()), threads=threads)
        time.sleep(every_s)


def _sample_stacks(path: str, every_s: float = 0.005) -> None:
    """Every `every_s`, note where each thread of this process is (its innermost frames, as
    file:line function); every 2 s write the counts per thread to `path` (JSON)."""
    import collections
    import traceback

    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    last = time.monotonic()
    me = threading.get_ident()
    while True:
        time.sleep(every_s)
        names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            stack = traceback.extract_stack(frame, limit=6)[::-1]
            where = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack)
            counts[names.get(ident, str(ident)).split("(")[0]][where] += 1
        if time.monotonic() - last > 2:
            last = time.monotonic()
            Path(path).write_text(json.dumps({n: c.most_common(40) for n, c in counts.items()}))


# --- the browser side (runs inside the namespace) -----------------------------------------
HOOK_JS = """(() => {
  if (window.__fl) return;
  const W = %(W)d, H = %(H)d, BITS = %(BITS)d, X0 = %(X0)d, BW = %(BW)d, CY = %(CY)d, RH = %(RH)d, MINC = %(MINC)d;
  const rec = {local: [], remote: [], on: false, t0: 0, track: null, localVideo: null, remoteVideo: null};
  window.__fl = rec;
  let ctx = null;
  function read(video) {
    const vw = video.videoWidth, vh = video.videoHeight;
    if (!vw || !vh) return -2;
    if (!ctx) ctx = new OffscreenCanvas(W, 2 * RH).getContext('2d', {willReadFrequently: true});
    ctx.drawImage(video, 0, vh * CY / H, vw, vh * 2 * RH / H, 0, 0, W, 2 * RH);
    const d = ctx.getImageData(0, 0, W, 2 * RH).data;
    let k = 0, worst = 255;
    const mean = (x0, y0) => { let s = 0, n = 0;
      for (let y = y0; y < y0 + 8; y++) for (let x = x0; x < x0 + 24; x++) {
        const o = 4 * (y * W + x); s += d[o] + d[o + 1] + d[o + 2]; n += 3; }
      return s / n; };
    for (let i = 0; i < BITS; i++) {
      const a = mean(X0 + BW * i + 12, 4), b = mean(X0 + BW * i + 12, RH + 4);
      worst = Math.min(worst, Math.abs(a - b));
      if (a > b) k |= 1 << i;
    }
    return worst >= MINC ? k : -1;
  }
  function watch(video, list) {
    const T = performance.timeOrigin;
    const cb = (now, m) => {
      if (rec.on || list === rec.local) list.push([read(video), T + m.expectedDisplayTime, T + now,
        m.captureTime ? T + m.captureTime : null, m.receiveTime ? T + m.receiveTime : null,
        m.presentedFrames, video.videoWidth, video.videoHeight]);
      video.requestVideoFrameCallback(cb);
    };
    video.requestVideoFrameCallback(cb);
  }
  const addTrack = RTCPeerConnection.prototype.addTrack;
  RTCPeerConnection.prototype.addTrack = function (track, ...streams) {
    if (track.kind === 'video') rec.track = track;
    return addTrack.call(this, track, ...streams);
  };
  // after START: the page's processed video, and a plain preview of the track it sends
  window.__flWatch = (remote) => {
    if (!rec.track) return 'no camera track was sent';
    rec.remoteVideo = remote; watch(remote, rec.remote);
    const v = document.createElement('video');
    v.muted = true; v.autoplay = true; v.playsInline = true;
    v.style.cssText = 'position:fixed;left:0;top:0;width:160px;height:120px;z-index:9';
    v.srcObject = new MediaStream([rec.track]);
    document.body.appendChild(v); v.play().catch(() => {});
    rec.localVideo = v; watch(v, rec.local);
    return '';
  };
  window.__flStart = () => { rec.remote.length = 0; rec.on = true;
    rec.t0 = performance.timeOrigin + performance.now(); return rec.t0; };
  window.__flStop = () => { rec.on = false;
    return {t0: rec.t0, t1: performance.timeOrigin + performance.now(), local: rec.local, remote: rec.remote}; };
})();""" % {"W": W, "H": H, "BITS": BITS, "X0": X0, "BW": BW, "CY": CODE_Y, "RH": ROW_H, "MINC": MIN_CONTRAST}


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds used so far: the whole machine (busy, all cores), and this process's
    descendants by kind (the streamlit server, Chromium, the rest: this script, Playwright)."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields]
    machine = (sum(values[:8]) - values[3] - values[4]) / tick  # all but idle and iowait
    parent, used, name = {}, {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        pid = int(d.name)
        parent[pid], used[pid] = int(rest[1]), (int(rest[11]) + int(rest[12])) / tick
        name[pid] = "server" if "streamlit" in cmd else "chromium" if "chromium" in cmd else "rest"
    out = {"machine": machine, "server": 0.0, "chromium": 0.0, "rest": 0.0}
    me = os.getpid()
    for pid in used:
        p, seen = pid, 0
        while p not in (0, 1, me) and seen < 64:
            p, seen = parent.get(p, 0), seen + 1
        if p == me:
            out[name[pid]] += used[pid]
    return out


def drive(home: str, y4m: str, seconds: float, repeats: int, settle: float, probe_log: str) -> list[dict]:
    """In the namespace: the probed app and, per repeat, a fresh Chromium streaming for `seconds`."""
    from conftest import CHROMIUM, LOCAL_PREFIXES, streamlit_server, wait_for_app
    from fakecam import fake_camera_args, start_camera
    from playwright.sync_api import sync_playwright

    # the server (only it: its children do not inherit this) installs the probes at start
    os.environ[PROBE_ENV] = probe_log
    runs = []
    with streamlit_server(Path(home)) as url, sync_playwright() as p:
        for r in range(repeats):
            browser = p.chromium.launch(executable_path=CHROMIUM, args=fake_camera_args(y4m))
            outside: list[str] = []
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.set_default_timeout(60_000)
                page.on("request", lambda q: None if q.url.startswith(LOCAL_PREFIXES) else outside.append(q.url))
                page.add_init_script(HOOK_JS)
                t_load = time.time()
                page.goto(f"{url}/webcam")
                wait_for_app(page, 180_000)
                t_click = time.time()
                _, video = start_camera(page)
                t_playing = time.time()
                why = video.evaluate("v => window.__flWatch(v)")
                if why:
                    raise RuntimeError(why)
                page.wait_for_timeout(settle * 1000)
                cpu0, t_cpu0 = cpu_snapshot(), time.monotonic()
                video.evaluate("v => window.__flStart()")
                page.wait_for_timeout(seconds * 1000)
                seen = video.evaluate("v => window.__flStop()")
                cpu1, span = cpu_snapshot(), time.monotonic() - t_cpu0
                seen["cpu"] = {k: (cpu1[k] - cpu0[k]) / span for k in cpu0}  # cores busy on average
                seen.update(repeat=r, load_s=t_click - t_load, start_s=t_playing - t_click, outside=outside)
                runs.append(seen)
                print(f"stream {r + 1}/{repeats}: {len(seen['remote'])} processed, {len(seen['local'])} "
                      f"preview frames presented", file=sys.stderr, flush=True)
            finally:
                browser.close()
    return runs


# --- analysis ----------------------------------------------------------------------------------
def q(vals, p: float) -> float:
    vals = sorted(v for v in vals if v is not None and np.isfinite(v))
    if not vals:
        return float("nan")
    return float(np.percentile(vals, p))


class Unwrap:
    """The y4m loops every `n` frames: give each read its count since the start, using the local
    preview (dense, in order) as the reference of which loop a time belongs to."""

    def __init__(self, local: list[tuple[float, int]], n: int) -> None:
        self.n = n
        ts, ks, prev = [], [], None
        for t, k in sorted(local):
            if k < 0:
                continue
            kk = k if prev is None else prev + ((k - prev + n // 2) % n) - n // 2
            ts.append(t)
            ks.append(kk)
            prev = kk
        self.ts, self.ks = np.array(ts), np.array(ks)

    def local(self) -> list[tuple[float, int]]:
        return list(zip(self.ts.tolist(), self.ks.tolist()))

    def __call__(self, t: float, k: int) -> int | None:
        """The count of a frame numbered k seen at time t, somewhere after the preview saw it."""
        if k < 0 or not len(self.ts):
            return None
        i = int(np.searchsorted(self.ts, t, side="right")) - 1
        ref = self.ks[max(i, 0)] + 2  # it cannot be later than the preview's frame then (slack 2)
        if i < 0 and t < self.ts[0] - 1.0:
            return None
        return int(ref - ((ref - k) % self.n))


def analyse(run: dict, server: list[dict], fps: float, n: int) -> dict:
    t0, t1 = run["t0"] / 1000, run["t1"] / 1000
    secs = t1 - t0
    # reads: [k, display, now, capture, receive, presentedFrames, w, h]; times in ms
    local_reads = [(r[1] / 1000, r[0], r[3] / 1000 if r[3] else None) for r in run["local"]]
    un = Unwrap([(t, k) for t, k, _ in local_reads], n)
    shown_local: dict[int, float] = {}
    capture: dict[int, float] = {}
    for t, k, c in local_reads:
        kk = un(t, k)
        if kk is None:
            continue
        shown_local.setdefault(kk, t)
        if c is not None:
            capture.setdefault(kk, c)
    if not shown_local:
        raise RuntimeError("the local preview showed no readable frame number")
    ref = capture if len(capture) >= len(shown_local) // 2 else shown_local
    offset = statistics.median(t - k / fps for k, t in ref.items())

    def cam(k: int) -> float:
        return ref.get(k, k / fps + offset)

    shown: dict[int, float] = {}
    received: dict[int, float] = {}
    unreadable = 0
    sizes = set()
    for r in run["remote"]:
        kk = un(r[1] / 1000, r[0])
        if kk is None:
            unreadable += 1
            continue
        sizes.add((r[6], r[7]))
        if kk not in shown:
            shown[kk] = r[1] / 1000
            if r[4]:
                received[kk] = r[4] / 1000
    presented = [r[5] for r in run["remote"] if r[5] is not None]
    local_ks = sorted(shown_local)

    # the server's records, joined on the frame count (the first record of each frame)
    first: dict[str, dict[int, dict]] = {kind: {} for kind in ("dec", "in", "cb", "proc", "out", "relay", "enc")}
    queued, dropped = [], 0
    for e in server:
        kind = e["kind"]
        if kind == "out" and not e.get("processed"):
            continue  # a raw camera frame passed on before the first processed one
        t = e.get("t", e.get("t0"))
        if kind == "queued" and t0 <= t <= t1:  # async processing kept only the newest of these
            queued.append(len(e["ks"]))
            dropped += len(e["ks"]) - 1
        if kind not in first:
            continue
        kk = un(t, e["k"])
        if kk is None:
            continue
        first[kind].setdefault(kk, e)
    dec, s_in, cb, proc, out, relay, enc = (first[k] for k in ("dec", "in", "cb", "proc", "out", "relay", "enc"))
    relay_queue = [e["queued"] for e in relay.values() if t0 <= e["t"] <= t1]

    snaps = [e for e in server if e["kind"] == "threads" and t0 - 1.5 <= e["t"] <= t1 + 1.5]
    threads_cpu: dict[str, float] = {}
    if len(snaps) >= 2:  # cores used over the window, by thread name (numbers stripped)
        a, b = snaps[0], snaps[-1]
        span = b["t"] - a["t"]
        for tid, (name, cpu) in b["threads"].items():
            if tid in a["threads"]:
                name = re.sub(r"[-_]?\d+(_\d+)?$", "", name)
                threads_cpu[name] = threads_cpu.get(name, 0.0) + (cpu - a["threads"][tid][1]) / span
        threads_cpu["threads started or ended meanwhile (Streamlit's page reruns)"] = (
            (b["total"] - a["total"]) / span - sum(threads_cpu.values()))

    in_window = [k for k in shown if t0 <= shown[k] <= t1]
    ms = 1000.0
    delay = [(shown[k] - cam(k)) * ms for k in in_window]
    delay_local = [(shown_local[k] - cam(k)) * ms for k in local_ks if t0 <= shown_local[k] <= t1]
    preview = statistics.median(delay_local) if delay_local else 0.0
    added = [d - preview for d in delay]
    full = [k for k in in_window if all(k in d for d in (dec, s_in, cb, out, relay, enc))]
    parts = {
        "camera → decoded in the server": [(dec[k]["t1"] - cam(k)) * ms for k in full],
        "  of which aiortc's VP8 decode": [(dec[k]["t1"] - dec[k]["t0"]) * ms for k in full],
        "decoded → taken by the processing track (queues)": [(s_in[k]["t"] - dec[k]["t1"]) * ms for k in full],
        "taken → processing starts (thread busy)": [(cb[k]["t0"] - s_in[k]["t"]) * ms for k in full],
        "frame callback": [(cb[k]["t1"] - cb[k]["t0"]) * ms for k in full],
        "  of which LivePipeline.process": [(proc[k]["t1"] - proc[k]["t0"]) * ms for k in full if k in proc],
        "processed → passed on (async mode: at the next camera frame)": [(out[k]["t"] - cb[k]["t1"]) * ms for k in full],
        "passed on → taken by the sender (relay queue)": [(relay[k]["t"] - out[k]["t"]) * ms for k in full],
        "taken → encoded (aiortc VP8 encode and its wait)": [(enc[k]["t1"] - relay[k]["t"]) * ms for k in full],
        "  of which the encode itself": [(enc[k]["t1"] - enc[k]["t0"]) * ms for k in full],
        "encoded → shown in Chromium": [(shown[k] - enc[k]["t1"]) * ms for k in full],
        "  encoded → received (packetize, send)": [(received[k] - enc[k]["t1"]) * ms for k in full if k in received],
        "  received → shown (jitter buffer, decode, render)": [(shown[k] - received[k]) * ms
                                                              for k in full if k in received],
    }
    s_proc = {k: (e["t0"], e["t1"], e["timings"]) for k, e in proc.items()}
    stages: dict[str, list[float]] = {}
    for k, (a, b, timings) in s_proc.items():
        if t0 <= a <= t1:
            for stage, v in timings.items():
                stages.setdefault(stage, []).append(v)

    def rate(times) -> float:
        return sum(t0 <= t <= t1 for t in times) / secs

    return {
        "seconds": secs, "fps": len(in_window) / secs,
        "fps_per_second": np.bincount([min(int(shown[k] - t0), int(secs) - 1) for k in in_window],
                                      minlength=max(1, int(secs))).tolist() if secs >= 1 else [],
        "presented_fps": (max(presented) - min(presented)) / secs if len(presented) > 1 else float("nan"),
        "preview_fps": len([k for k in local_ks if t0 <= shown_local[k] <= t1]) / secs,
        "camera_rate": ((local_ks[-1] - local_ks[0]) / (shown_local[local_ks[-1]] - shown_local[local_ks[0]])
                        if len(local_ks) > 1 else float("nan")),
        "decoded_fps": rate(e["t1"] for e in dec.values()), "server_in_fps": rate(e["t"] for e in s_in.values()),
        "processed_fps": rate(e["t0"] for e in proc.values()), "sent_fps": rate(e["t1"] for e in enc.values()),
        "passed_all_fps": rate(e["t"] for e in server if e["kind"] == "out"),
        "encoded_all_fps": rate(e["t1"] for e in server if e["kind"] == "enc"),
        "dropped": dropped, "late": sum(t0 <= e["t0"] <= t1 and k not in proc for k, e in cb.items()), "queued_mean": float(np.mean(queued)) if queued else 0.0,
        "delay": delay, "delay_local": delay_local, "added": added, "parts": parts, "stages": stages,
        "unreadable": unreadable, "sizes": sorted(sizes), "captured": ref is capture, "full": len(full),
        "shown": len(in_window), "relay_queue": relay_queue, "cpu": run["cpu"], "threads_cpu": threads_cpu, "load_s": run["load_s"], "start_s": run["start_s"], "outside": run["outside"],
    }


def report(results: list[dict], fps: float, busy: bool, seconds: float) -> None:
    def pool(key):
        return [v for r in results for v in r[key]]

    def line(name, vals, unit="ms", target=None):
        med, p90 = q(vals, 50), q(vals, 90)
        extra = f"   {med / target:5.2f}x target" if target else ""
        print(f"  {name:<56}{med:8.1f}{p90:8.1f} {unit}{extra}")

    fps_runs = [r["fps"] for r in results]
    print(f"live preview in Chromium (headless, fake camera 640x480 at {fps:g} fps, sample workspace), "
          f"{len(results)} stream(s) of {seconds:g} s; "
          + ("a training job ran beside" if busy else "quiet (nothing else started by this benchmark)"))
    print(f"  page load {statistics.median(r['load_s'] for r in results):.1f} s, START → processed video "
          f"{statistics.median(r['start_s'] for r in results):.1f} s; processed video size(s) "
          f"{sorted({s for r in results for s in r['sizes']})}; delays from "
          + ("Chromium's captureTime" if all(r["captured"] for r in results) else "the preview's display time"))
    for i, r in enumerate(results):
        c = r["cpu"]
        others = max(0.0, c["machine"] - c["server"] - c["chromium"] - c["rest"])
        print(f"  stream {i + 1}: {r['fps']:.1f} fps shown, added delay {q(r['added'], 50):.0f} ms; CPU busy "
              f"{c['machine']:.2f} of {os.cpu_count()} cores: streamlit server {c['server']:.2f}, Chromium "
              f"{c['chromium']:.2f}, this script and Playwright {c['rest']:.2f}, other processes {others:.2f}")
    names = sorted({n for r in results for n in r["threads_cpu"]},
                   key=lambda n: -statistics.fmean(r["threads_cpu"].get(n, 0.0) for r in results))
    shares = [(n, statistics.fmean(r["threads_cpu"].get(n, 0.0) for r in results)) for n in names]
    print("  the server's CPU by thread (cores, mean over streams): "
          + ", ".join(f"{n} {c:.2f}" for n, c in shares if c >= 0.01))
    if any(r["outside"] for r in results):
        print(f"  WARNING: the page sent requests off this machine: {results[0]['outside'][:3]}")
    per_second = pool("fps_per_second")
    print(f"  {'frames shown per second, second by second':<56}{'median':>8}{'p10':>8}   (p10: 90 % of seconds showed more)")
    print(f"  {'shown, processed video (distinct frame numbers)':<56}{q(per_second, 50):8.1f}{q(per_second, 10):8.1f}"
          f"   {q(per_second, 50) / TARGET_FPS:5.2f}x target ≥ {TARGET_FPS:g}")
    print(f"  {'frames per second, per stream':<56}{'median':>8}{'min':>8}")
    print(f"  {'shown, processed video (distinct frame numbers)':<56}{statistics.median(fps_runs):8.1f}"
          f"{min(fps_runs):8.1f}   {statistics.median(fps_runs) / TARGET_FPS:5.2f}x target ≥ {TARGET_FPS:g}")
    for name, key in (("presented by the processed <video> (presentedFrames)", "presented_fps"),
                      ("camera file's rate", None), ("camera, as the plain preview showed it", "preview_fps"),
                      ("camera frames decoded in the server", "decoded_fps"),
                      ("  taken from aiortc's queue by the output track", "server_in_fps"),
                      ("frames processed (callback runs)", "processed_fps"),
                      ("frames passed to the sender (one per camera frame)", "passed_all_fps"),
                      ("frames encoded and sent (repeats included)", "encoded_all_fps"),
                      ("  distinct processed frames among them", "sent_fps")):
        vals = [fps] * len(results) if key is None else [r[key] for r in results]
        print(f"  {name:<56}{statistics.median(vals):8.1f}{min(vals):8.1f}")
    arrived = sum(r["server_in_fps"] * r["seconds"] for r in results)  # taken from aiortc's queue
    print(f"  camera frames skipped: {sum(r['late'] for r in results)} as late (sync processing, "
          f"the page's LateFrames), {sum(r['dropped'] for r in results)} by async processing (only the "
          f"newest queued is processed), of {arrived:.0f} "
          f"(mean queue {statistics.fmean(r['queued_mean'] for r in results):.2f})")
    print(f"  frames waiting in the relay's queue to the sender when one is taken: median "
          f"{q(pool('relay_queue'), 50):.0f}, p90 {q(pool('relay_queue'), 90):.0f}, max {q(pool('relay_queue'), 100):.0f}")
    print(f"  {'delay per frame':<56}{'median':>8}{'p90':>8}")
    line("camera → shown, processed video", pool("delay"))
    line("camera → shown, plain local preview", pool("delay_local"))
    line("added delay (processed − the preview's median)", pool("added"), target=TARGET_ADDED_MS)
    print(f"  where the time goes ({sum(r['full'] for r in results)} frames followed camera → server → page)")
    for name in results[0]["parts"]:
        line(name, [v for r in results for v in r["parts"][name]])
    print("  LivePipeline stages in the server (ms)")
    for stage in results[0]["stages"] or ():
        line(stage, [v for r in results for v in r["stages"].get(stage, [])])
    unread = sum(r["unreadable"] for r in results)
    if unread:
        print(f"  ({unread} processed-video reads had no readable frame number)")
    added = q(pool("added"), 50)
    print(f"browser fps = {statistics.median(fps_runs):.1f}, added delay = {added:.0f} ms")


# --- the parent side ----------------------------------------------------------------------------
def start_training(w) -> str:
    """A background training run with the default recipe, as the Train page starts one."""
    from facelab.model import jobs
    from facelab.model.models import ModelConfig

    config = ModelConfig()
    run_id = jobs.create_run(w, config, name="live_speed: busy")
    jobs.start(w, run_id)
    return run_id


def run(seconds: float, repeats: int, busy: bool, camera_fps: int, home: str | None, settle: float,
        stacks: str | None = None, what_if: list[str] = ()) -> None:
    from fakecam import namespaces_possible, network_namespace
    from media import media_file

    if why := namespaces_possible():
        raise SystemExit(f"--browser needs a network namespace for WebRTC: {why}")
    tmp = Path(tempfile.mkdtemp(prefix="facelab-live-bench-"))
    home_path = Path(home) if home else tmp / "home"
    home_path.mkdir(parents=True, exist_ok=True)
    os.environ["FACELAB_HOME"] = str(home_path)
    from facelab import sample
    from facelab.model import jobs

    t = time.time()
    w = sample.ensure_sample(home_path, say=lambda _: None)
    print(f"sample workspace ready in {time.time() - t:.0f} s", file=sys.stderr, flush=True)
    # 20 s before the file loops: frame numbers are told apart across loops while delays stay under that
    y4m, n = write_numbered_y4m(media_file("WolfgangLanger_Pexels.mp4"), tmp / "numbered.y4m", camera_fps, 20.0)
    (tmp / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp / "server.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp), os.environ.get("PYTHONPATH")])),
           # the other code in this repository may change while it runs: never reload the app
           "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    if stacks:
        env[STACKS_ENV] = str(Path(stacks).resolve())
    if what_if:
        env[WHAT_IF_ENV] = ",".join(what_if)
    busy_run = start_training(w) if busy else None
    try:
        with network_namespace("fl_bench") as inside:
            child = subprocess.run(
                [*inside, sys.executable, __file__, "drive", str(home_path), str(y4m), str(seconds), str(repeats),
                 str(settle), str(log)],
                stdout=subprocess.PIPE, text=True, env=env, timeout=300 + repeats * (seconds + 120),
            )
        training = jobs.status(w, busy_run) if busy_run else None
    finally:
        y4m.unlink(missing_ok=True)  # 276 MB; the rest of `tmp` stays if anything below fails
        if busy_run:
            jobs.cancel(w, busy_run)
            from conftest import stop_background_work

            stop_background_work(home_path)
    if child.returncode != 0:
        raise SystemExit(f"the browser part failed ({child.returncode}); server log under {home_path}")
    runs = json.loads(child.stdout.strip().splitlines()[-1])
    server = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
    if home:  # the raw reads beside the kept home, to look into
        (home_path / "live_browser_raw.json").write_text(json.dumps({"runs": runs, "server": server, "n": n}))
    results = [analyse(r, server, camera_fps, n) for r in runs]
    for name in what_if:
        print(f"WHAT-IF, not the app as it ships: {WHAT_IFS[name]}")
    report(results, camera_fps, busy, seconds)
    if stacks:
        print(f"(the server's thread stacks, sampled every 5 ms: {stacks})")
    if training is not None:  # it must have trained all along, not finished or failed early
        print(f"the training job beside: {training.state} at the end, step {training.step} of {training.steps}")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)  # the fake camera, the server log (and a home made here)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "drive":
    _, _, home_arg, y4m_arg, secs_arg, reps_arg, settle_arg, log_arg = sys.argv
    print(json.dumps(drive(home_arg, y4m_arg, float(secs_arg), int(reps_arg), float(settle_arg), log_arg)))
