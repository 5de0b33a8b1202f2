"""`tessera serve`: a web page with one tab per capability, on Gradio (the `ui` extra).

Each tab calls the same pipeline function as its command (`tessera generate`, `image`, `animate`,
`extend`, `connect`, `loop`, `edit`, `long`) with the same options and defaults (`tessera.options`), and
shows the command line that reproduces its result. A request is checked before it is queued, with the
messages the command line gives; the expanded caption is shown before sampling; a progress bar follows
the sampler's steps. Jobs wait in one queue and at most `concurrency` sample at once.

Files: everything the server writes, uploads included, is under its output folder. Uploads are limited
in size, must be a readable video or image whose first bytes match its suffix, and are read only from
there; results are named by the server (`0007-generate.mp4`), never by a request.
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tessera import pipeline
from tessera.caption.expand import expand_for_generate, grounded_caption
from tessera.caption.weights import load_captioner
from tessera.checkpoint import read_json
from tessera.config import ModelConfig
from tessera.errors import RequestError as ServeError
from tessera.options import DEFAULTS as D
from tessera.options import parse_interval
from tessera.video import VideoError, probe, read_video, save_image, write_video

SHIPPED = "shipped model"
MAX_UPLOAD_BYTES = 64 * 2**20  # the default of --max-upload-mb
MAX_UPLOAD_FRAMES = 1024  # frames an uploaded clip may hold (decoding is bounded before it starts)
VIDEO_IN = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".webp")
STILL_IN = (".png", ".jpg", ".jpeg", ".webp")
UPLOAD_DIR = ".uploads"  # under the output folder: Gradio's upload cache
# The negative prompt appears on the page (and `--negative-prompt` in its command lines) as soon as the
# pipeline's sampler keywords take one.
NEGATIVE = "negative_prompt" in pipeline.Sampling.__annotations__

# Each capability by its command's name (also its API name on the page): the tab's title and what it does.
CAPABILITIES = {
    "generate": ("Text to video", "A clip from a prompt."),
    "image": ("Text to image", "One frame from a prompt."),
    "animate": ("Image to video", "A clip that starts on the given image."),
    "extend": ("Extend", "Continue a clip after its end (forward) or before its start (backward)."),
    "connect": ("Connect", "A bridge from where clip A ends to where clip B starts."),
    "loop": ("Loop", "A clip that ends on the frame it starts on."),
    "edit": ("Edit", "Redraw a clip (1 + 4k frames) under a prompt; lower strength keeps more of it."),
    "long": ("Long", "A video longer than the trained length, in windows that each continue the last."),
}


# ---------------------------------------------------------------------------------------------
# Requests: the fields of a tab, checked, as the pipeline call and the command line that repeat it.


@dataclass
class Request:
    """One tab's fields, checked; `inputs` are uploaded files (already checked, under the upload folder)."""

    command: str
    prompt: str
    model: Path | None
    frames: int = D.frames
    width: int = D.width
    height: int = D.height
    steps: int = D.steps
    guidance: float = D.guidance
    seed: int = D.seed
    sampler: str = D.sampler
    guidance_interval: tuple[float, float] | None = D.guidance_interval
    negative_prompt: str = ""
    expand: bool = True
    fps: float = D.fps
    direction: str = "forward"
    overlap: int | None = None
    blend: bool = True
    fade: int | None = None
    strength: float = D.strength
    window: int = D.window
    inputs: tuple[Path, ...] = ()

    @property
    def suffix(self) -> str:
        return ".png" if self.command == "image" else ".mp4"

    def sampling(self, progress: Callable[[int, int], None] | bool = False) -> dict:
        """The `pipeline.Sampling` keywords."""
        s = {
            "steps": self.steps, "guidance": self.guidance, "seed": self.seed, "sampler": self.sampler,
            "guidance_interval": self.guidance_interval, "progress": progress,
        }  # fmt: skip
        if NEGATIVE and self.negative_prompt:
            s["negative_prompt"] = self.negative_prompt
        return s

    def argv(self, out: str, inputs: tuple[Path, ...] | None = None) -> list[str]:
        """The `tessera ...` command line that writes this request's result to `out`."""
        files = [str(p) for p in (self.inputs if inputs is None else inputs)]
        c, a = self.command, ["tessera", self.command]
        a += [self.prompt] if c == "loop" else [*files, self.prompt]  # `loop` takes its video as --video
        a += ["-o", out]
        if self.model is not None:
            a += ["--model", str(self.model)]
        if c in ("generate", "image", "loop", "long"):
            a += ["--size", f"{self.width}x{self.height}"]
        if c in ("generate", "animate", "extend", "connect", "loop", "long"):
            a += ["--frames", str(self.frames)]
        if c == "extend":
            a += ["--forward" if self.direction == "forward" else "--backward"]
            a += [] if self.overlap is None else ["--overlap", str(self.overlap)]
        if c in ("extend", "connect", "long"):
            a += ["--blend" if self.blend else "--no-blend"]
        if c == "loop":
            a += [] if not files else ["--video", files[0]]
            a += [] if self.fade is None else ["--fade", str(self.fade)]
        if c == "edit":
            a += ["--strength", f"{self.strength:g}"]
        if c == "long":
            a += ["--window", str(self.window)]
        a += ["--steps", str(self.steps), "--guidance", f"{self.guidance:g}", "--seed", str(self.seed)]
        a += ["--sampler", self.sampler]
        if self.guidance_interval is not None:
            a += ["--guidance-interval", ",".join(f"{v:g}" for v in self.guidance_interval)]
        if NEGATIVE and self.negative_prompt:
            a += ["--negative-prompt", self.negative_prompt]
        if c != "image":
            a += ["--fps", f"{self.fps:g}"]
        a += ["--expand" if self.expand else "--no-expand"]
        return a


def _int(values: dict, name: str, low: int | None = None) -> int:
    v = values.get(name)
    if v is None or v == "" or float(v) != int(float(v)):
        raise ServeError(f"--{name} must be a whole number; got {v!r}")
    v = int(float(v))
    if low is not None and v < low:
        raise ServeError(f"--{name} must be at least {low}; got {v}")
    return v


def _float(values: dict, name: str) -> float:
    v = values.get(name)
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ServeError(f"--{name} must be a number; got {v!r}") from None


def parse_request(
    command: str,
    values: dict,
    models: dict[str, Path | None],
    upload_root: Path,
    device: str = "auto",
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> Request:
    """A tab's raw field values as a checked Request: the CLI's checks and messages (for a model on
    `device`), run before any work."""
    if command not in CAPABILITIES:
        raise ServeError(f"unknown capability {command!r}; one of {', '.join(CAPABILITIES)}")
    label = values.get("model") or next(iter(models))
    if label not in models:
        raise ServeError(f"unknown model {label!r}; this server offers {', '.join(models)}")
    prompt = str(values.get("prompt") or "").strip()
    if not prompt:
        raise ServeError("the prompt is empty; say what the video shows")
    r = Request(command, prompt, models[label])
    r.steps, r.seed = _int(values, "steps"), _int(values, "seed")
    r.guidance, r.fps = _float(values, "guidance"), _float(values, "fps")
    r.sampler = str(values.get("sampler") or D.sampler)
    r.guidance_interval = parse_interval(str(values["guidance_interval"]).strip() or None)
    r.negative_prompt = str(values.get("negative_prompt") or "")
    r.expand = bool(values.get("expand", True))
    if not 0 < r.fps <= 240:
        raise ServeError(f"--fps must be between 0 and 240; got {r.fps:g}")
    pipeline.check_sampling(r.steps, r.guidance, r.seed, r.sampler, r.guidance_interval)
    if "width" in values:
        r.width, r.height = _int(values, "width"), _int(values, "height")
    if "frames" in values:
        r.frames = _int(values, "frames")
    r.direction = str(values.get("direction") or "forward")
    r.blend = bool(values.get("blend", True))
    r.overlap = _int(values, "overlap") if values.get("overlap") not in (None, "", 0) else None
    r.fade = _int(values, "fade", 0) if values.get("fade") not in (None, "") else None
    if command == "edit":
        r.strength = _float(values, "strength")
        pipeline.check_strength(r.strength)
    if command == "long":
        r.window = _int(values, "window")
        pipeline.long_segments(r.frames, r.window)
    r.inputs = _inputs(command, values, upload_root, max_bytes)
    _check_shape(r, pipeline.pick_device(device))
    return r


def _inputs(command: str, values: dict, upload_root: Path, max_bytes: int) -> tuple[Path, ...]:
    """The uploaded files a capability reads, each checked (`check_upload`)."""
    need = {"animate": ["image"], "extend": ["video"], "connect": ["video_a", "video_b"], "edit": ["video"]}
    names = need.get(command, ["video"] if command == "loop" and values.get("video") else [])
    kinds = {"image": "image", "video": "video", "video_a": "video", "video_b": "video"}
    files = []
    for name in names:
        if not values.get(name):
            raise ServeError(f"{command} needs {name.replace('_', ' ')}: upload one")
        what = "image or video" if command in ("animate", "loop") else kinds[name]
        files.append(check_upload(Path(_path_of(values[name])), what, upload_root, max_bytes))
    return tuple(files)


def _path_of(value) -> str:
    """A Gradio file value (a path, or a dict / object with a path) as a path string."""
    if isinstance(value, dict):
        return value.get("path") or value.get("name") or ""
    return str(getattr(value, "path", None) or getattr(value, "name", None) or value)


def _check_shape(r: Request, device) -> None:
    """The size checks `pipeline.check_request` makes (frames 1 + 4k, sides multiples of 16, memory on
    `device`) for the requests whose size the page sets; those sized by an upload get the frame check."""
    config = _config(r.model)
    if r.command in ("generate", "image", "loop", "long") and config is not None:
        frames = {"image": 1, "long": min(r.frames, r.window)}.get(r.command, r.frames)
        pipeline.check_request(config, frames, r.height, r.width, device)
    elif r.command not in ("image", "edit"):  # (edit: the clip's own length, checked when it is read)
        pipeline.check_frames(r.frames)


def _config(model: Path | None):
    """The model folder's config, read without loading weights; None for a folder of another layout
    (its loader checks requests when the job runs)."""
    path = model or pipeline.default_model_path()
    if path is None:
        pipeline.load(None)  # raises the CLI's message: no shipped model
    try:
        return ModelConfig.from_dict(read_json(Path(path) / "config.json"))
    except (ValueError, TypeError, KeyError):
        return None


# ---------------------------------------------------------------------------------------------
# Uploads: size, suffix, first bytes, then the container's own header (frame count, size).

SIGNATURES = {
    ".png": [(0, b"\x89PNG\r\n\x1a\n")],
    ".jpg": [(0, b"\xff\xd8\xff")],
    ".jpeg": [(0, b"\xff\xd8\xff")],
    ".gif": [(0, b"GIF87a"), (0, b"GIF89a")],
    ".webp": [(8, b"WEBP")],
    ".mp4": [(4, b"ftyp")],
    ".m4v": [(4, b"ftyp")],
    ".mov": [(4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"wide"), (4, b"free")],
    ".mkv": [(0, b"\x1a\x45\xdf\xa3")],
    ".webm": [(0, b"\x1a\x45\xdf\xa3")],
    ".avi": [(8, b"AVI ")],
}


def check_upload(path: Path, what: str, upload_root: Path, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """`path` if it is an upload under `upload_root` whose suffix fits `what` ('image', 'video' or 'image
    or video'), whose first bytes are that format's and whose header stays within the server's limits;
    otherwise ServeError naming the problem. Nothing is decoded but the header and the first frame."""
    resolved = path.resolve()
    if not resolved.is_relative_to(upload_root.resolve()):
        raise ServeError(f"{path.name}: files are read only from this server's uploads")
    suffix = resolved.suffix.lower()
    allowed = {
        "image": STILL_IN,
        "video": VIDEO_IN,
        "image or video": tuple(dict.fromkeys(STILL_IN + VIDEO_IN)),
    }
    if suffix not in allowed[what]:
        raise ServeError(
            f"{path.name}: a {what} must be one of {' '.join(allowed[what])}; got {suffix or 'no suffix'}"
        )
    if not resolved.is_file():
        raise ServeError(f"{path.name}: the upload is gone; upload it again")
    size = resolved.stat().st_size
    if size > max_bytes:
        raise ServeError(
            f"{path.name}: {size / 2**20:.1f} MiB is over this server's {max_bytes / 2**20:.0f} MiB limit"
        )
    with open(resolved, "rb") as f:
        head = f.read(16)
    if not any(head[at : at + len(sig)] == sig for at, sig in SIGNATURES[suffix]):
        raise ServeError(
            f"{path.name}: not a {suffix.lstrip('.').upper()} file (its first bytes say otherwise)"
        )
    try:
        info = probe(resolved)
    except VideoError as e:
        raise ServeError(f"{path.name}: {e.problem}") from None
    if max(info["width"], info["height"]) > pipeline.MAX_SIDE or info["frames"] > MAX_UPLOAD_FRAMES:
        raise ServeError(
            f"{path.name}: {info['frames']} frames of {info['width']}x{info['height']}; this server takes "
            f"up to {MAX_UPLOAD_FRAMES} frames of at most {pipeline.MAX_SIDE} pixels a side"
        )
    return resolved


# ---------------------------------------------------------------------------------------------
# Running a request: the pipeline call its command makes, written under the output folder.


class Models:
    """Loaded models by folder, the most recent two kept (loading twice is slow, keeping all is memory)."""

    def __init__(self, device: str, keep: int = 2):
        self.device, self.keep = device, keep
        self.loaded: OrderedDict[Path | None, pipeline.Model] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, path: Path | None):
        with self.lock:
            if path not in self.loaded:
                self.loaded[path] = pipeline.load(path, self.device)
                while len(self.loaded) > self.keep:
                    self.loaded.popitem(last=False)
            self.loaded.move_to_end(path)
            return self.loaded[path]


def expanded(r: Request) -> tuple[str, list[str]]:
    """The caption the model is given, and warnings, exactly as the command line expands it: over the
    captioner's reading of the given frames for the conditioned commands, else from the prompt alone."""
    if not r.expand:
        return r.prompt, []

    given = given_frames(r)
    if given is None:
        return expand_for_generate(r.prompt, r.seed)
    caption, _, warnings = grounded_caption(r.prompt, given, r.seed, _captioner())
    return caption, warnings


def given_frames(r: Request):
    """The frames (T, H, W, 3) a conditioned command grounds its caption in, as `tessera.cli` reads
    them (the image, the clip, clip A, the loop's video, the source), or None."""
    files = r.inputs
    if r.command == "animate" or (r.command == "loop" and files):
        return read_video(files[0], frames=1)
    if r.command in ("extend", "connect", "edit"):
        return read_video(files[0])
    return None


_CAPTIONERS: dict[str, object] = {}


def _captioner():
    """The shipped captioner on the CPU, loaded once per server (the command line loads it per run)."""
    if "cpu" not in _CAPTIONERS:
        _CAPTIONERS["cpu"] = load_captioner(None, "cpu")
    return _CAPTIONERS["cpu"]


def execute(model, r: Request, caption: str, progress: Callable[[int, int], None] | bool = False):
    """The pipeline call of r's command (as in `tessera.cli`): uint8 frames, or an (H, W, 3) image."""
    s, files = r.sampling(progress), r.inputs
    c = r.command
    if c == "generate":
        return pipeline.generate(model, caption, frames=r.frames, height=r.height, width=r.width, **s)
    if c == "image":
        return pipeline.image(model, caption, width=r.width, height=r.height, **s)
    if c == "animate":
        return pipeline.animate(model, read_video(files[0], frames=1)[0], caption, r.frames, **s)
    if c == "extend":
        return pipeline.extend(
            model, read_video(files[0]), caption, r.frames, r.direction, r.overlap, blend=r.blend, **s
        )
    if c == "connect":
        a, b = read_video(files[0]), read_video(files[1])
        return pipeline.connect(model, a, b, caption, r.frames, blend=r.blend, **s)
    if c == "loop":
        v = read_video(files[0], frames=1) if files else None
        return pipeline.loop(model, caption, r.frames, v, r.height, r.width, fade=r.fade, **s)
    if c == "edit":
        return pipeline.edit(model, read_video(files[0]), caption, r.strength, **s)
    return pipeline.long(
        model, caption, r.frames, r.window, height=r.height, width=r.width, blend=r.blend, **s
    )


class Jobs:
    """Numbers jobs in the order they start and writes their files under `out` (never elsewhere)."""

    def __init__(self, out: Path):
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        taken = [int(p.name[:4]) for p in out.iterdir() if p.name[:4].isdigit()]
        self.counter = itertools.count(max(taken, default=0) + 1)
        self.lock = threading.Lock()

    def start(self, r: Request) -> tuple[int, Path, tuple[Path, ...]]:
        """A new job number, its result path, and its inputs copied beside it (the command reads those)."""
        with self.lock:
            n = next(self.counter)
        kept = []
        for i, src in enumerate(r.inputs):
            dst = self.out / f"{n:04d}-input{i + 1}{src.suffix.lower()}"
            shutil.copyfile(src, dst)
            kept.append(dst)
        return n, self.out / f"{n:04d}-{r.command}{r.suffix}", tuple(kept)

    def write(self, path: Path, result, fps: float) -> Path:

        if path.suffix == ".png":
            return save_image(path, result.numpy())
        return write_video(path, result, fps=fps)


# ---------------------------------------------------------------------------------------------
# The page


def model_choices(paths: list[Path]) -> dict[str, Path | None]:
    """Picker entries: the shipped model (when this install has one), each given model folder, and the
    model folders directly inside each given folder that is not one itself. A model folder holds a
    config.json (tessera's) or a model_index.json (a diffusers layout, e.g. Wan); loading decides."""
    found: dict[str, Path | None] = {}
    is_model = lambda p: (p / "config.json").is_file() or (p / "model_index.json").is_file()
    for p in paths:
        p = p.resolve()
        if is_model(p):
            found[str(p)] = p
        elif p.is_dir():
            found.update({str(sub): sub for sub in sorted(p.iterdir()) if is_model(sub)})
        else:
            raise ServeError(f"--model {p}: no such model folder")
    if pipeline.default_model_path() is not None:
        found[SHIPPED] = None
    if not found:
        pipeline.load(None)  # the CLI's message: no shipped model, pass --model
        raise ServeError("no model folders found under the given --model paths")
    return found


def build(
    models: dict[str, Path | None],
    out: Path,
    device: str = "auto",
    concurrency: int = 1,
    queue_size: int = 64,
    max_bytes: int = MAX_UPLOAD_BYTES,
):
    """The Gradio Blocks of the page (queued, not launched)."""
    # optional dependency (the ui extra), loaded only when the page is served
    import gradio as gr

    upload_root = out / UPLOAD_DIR
    jobs, loaded = Jobs(out), Models(device)

    def check(command: str, values: dict) -> Request:
        try:
            return parse_request(command, values, models, upload_root, device, max_bytes)
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e), duration=None, print_exception=False) from None

    def first(command: str, names: list[str]):
        def fn(*args):
            r = check(command, dict(zip(names, args, strict=True)))
            caption, warnings = expanded(r)
            note = "".join(f"\n\nwarning: {w}" for w in warnings)
            return caption, f"Queued: {CAPABILITIES[command][0].lower()}.{note}"

        return fn

    def run(command: str, names: list[str]):
        def fn(*args, progress=gr.Progress()):
            r = check(command, dict(zip(names, args, strict=True)))
            caption, _ = expanded(r)
            n, path, kept = jobs.start(r)
            line = shlex.join(r.argv(path.name, kept))
            yield caption, f"Job {n}: loading the model", None, None, line
            t0 = time.perf_counter()
            try:
                model = loaded.get(r.model)
                passes = itertools.count(1)
                state = {"pass": 0}

                def report(i: int, total: int) -> None:
                    if i == 1:
                        state["pass"] = next(passes)
                    progress((i, total), desc=f"sampling (pass {state['pass']})", unit="steps")

                yield caption, f"Job {n}: sampling", None, None, line
                result = execute(model, r, caption, report)
                jobs.write(path, result, r.fps)
            except (ValueError, FileNotFoundError) as e:
                raise gr.Error(str(e), duration=None, print_exception=False) from None
            took = time.perf_counter() - t0
            shown = str(path)
            yield caption, f"Job {n}: done in {took:.1f} s, `{path.name}`", shown, shown, line

        return fn

    day = 24 * 3600  # Gradio's cached copies are dropped after a day; results and their inputs stay
    with gr.Blocks(title="tessera", analytics_enabled=False, delete_cache=(3600, day)) as demo:
        gr.Markdown("# tessera\nText to video on this machine; each result comes with its command line.")
        picker = gr.Dropdown(list(models), value=next(iter(models)), label="Model", elem_id="model")
        with gr.Tabs():
            for command, (title, what) in CAPABILITIES.items():
                with gr.Tab(title, id=command, elem_id=f"tab-{command}"):
                    _tab(gr, command, what, picker, first, run)
    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    return demo


def _tab(gr, command: str, what: str, picker, first, run) -> None:
    """One capability's fields, buttons and results."""
    f: dict[str, object] = {"model": picker}
    gr.Markdown(what)
    with gr.Row():
        with gr.Column():
            if command == "animate":
                f["image"] = gr.File(
                    label="Image (its first frame if a video)", file_types=list(STILL_IN + VIDEO_IN)
                )
            if command in ("extend", "edit"):
                f["video"] = gr.File(label="Video", file_types=list(VIDEO_IN))
            if command == "connect":
                f["video_a"] = gr.File(label="Video A (start from)", file_types=list(VIDEO_IN))
                f["video_b"] = gr.File(label="Video B (arrive at)", file_types=list(VIDEO_IN))
            if command == "loop":
                f["video"] = gr.File(
                    label="Loop on this frame (optional; default: generated)",
                    file_types=list(STILL_IN + VIDEO_IN),
                )
            f["prompt"] = gr.Textbox(label="Prompt", lines=2, placeholder="a red ball bouncing on grass")
            with gr.Row():
                if command != "image":
                    frames = D.long_frames if command == "long" else D.frames
                    f["frames"] = gr.Number(frames, label="Frames (1 + 4k)", precision=0)
                if command in ("generate", "image", "loop", "long"):
                    f["width"] = gr.Number(D.width, label="Width", precision=0)
                    f["height"] = gr.Number(D.height, label="Height", precision=0)
            if command == "extend":
                with gr.Row():
                    f["direction"] = gr.Radio(["forward", "backward"], value="forward", label="Direction")
                    f["overlap"] = gr.Number(None, label="Overlap frames (empty: half)", precision=0)
            if command == "loop":
                f["fade"] = gr.Number(None, label="Fade frames (empty: 8, at most half)", precision=0)
            if command == "edit":
                f["strength"] = gr.Slider(0, 1, value=D.strength, step=0.05, label="Strength")
            if command == "long":
                f["window"] = gr.Number(D.window, label="Window frames", precision=0)
            if command in ("extend", "connect", "long"):
                f["blend"] = gr.Checkbox(True, label="Blend the shared frames")
            with gr.Accordion("Sampling", open=False):
                with gr.Row():
                    f["steps"] = gr.Number(D.steps, label="Steps", precision=0)
                    f["guidance"] = gr.Number(D.guidance, label="Guidance (1 = off)")
                    f["seed"] = gr.Number(D.seed, label="Seed", precision=0)
                with gr.Row():
                    f["sampler"] = gr.Dropdown(list(pipeline.SAMPLERS), value=D.sampler, label="Sampler")
                    f["guidance_interval"] = gr.Textbox("", label="Guidance interval LO,HI (empty: always)")
                    if command != "image":
                        f["fps"] = gr.Number(D.fps, label="Frames per second")
                if NEGATIVE:
                    f["negative_prompt"] = gr.Textbox("", label="Negative prompt")
                f["expand"] = gr.Checkbox(True, label="Expand the prompt into a detailed caption")
            button = gr.Button("Generate", variant="primary", elem_id=f"{command}-go")
        with gr.Column():
            caption = gr.Textbox(label="Expanded caption", interactive=False, elem_id=f"{command}-caption")
            status = gr.Markdown(elem_id=f"{command}-status")
            if command == "image":
                result = gr.Image(
                    label="Result", type="filepath", interactive=False, elem_id=f"{command}-result"
                )
            else:
                result = gr.Video(
                    label="Result", interactive=False, loop=True, height=360, elem_id=f"{command}-result"
                )
            download = gr.File(label="Download", interactive=False, elem_id=f"{command}-download")
            line = gr.Code(
                label="Command line that repeats it", language="shell", interactive=False, lines=2,
                wrap_lines=True, buttons=["copy"], elem_id=f"{command}-command",
            )  # fmt: skip
    if "fps" not in f:
        f["fps"] = gr.State(D.fps)
    for name, component in f.items():  # every field findable by id, e.g. #generate-steps
        if name != "model" and not isinstance(component, gr.State):
            component.elem_id = component.elem_id or f"{command}-{name}"
    names = list(f)
    inputs = [f[k] for k in names]
    button.click(
        first(command, names), inputs, [caption, status], api_visibility="private",
        concurrency_id="check", concurrency_limit=4,
    ).success(
        run(command, names), inputs, [caption, status, result, download, line],
        api_name=command, concurrency_id="sampling", show_progress_on=[result],
    )  # fmt: skip


def serve(
    model: list[Path] | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    out: Path = Path("serve-out"),
    device: str = "auto",
    concurrency: int = 1,
    queue_size: int = 64,
    max_upload_mb: int = 64,
) -> None:
    """Start the server (blocks). Uploads and Gradio's cache live under `out` with the results."""
    if concurrency < 1 or queue_size < 1 or max_upload_mb < 1:
        raise ServeError("--concurrency, --queue-size and --max-upload-mb must be at least 1")
    out = Path(out).resolve()
    (out / UPLOAD_DIR).mkdir(parents=True, exist_ok=True)
    models = model_choices(list(model or []))
    pipeline.pick_device(device)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host}: anyone who can reach this machine can run jobs and see results")
    # Before Gradio is imported: its upload cache is read from here at import time.
    os.environ["GRADIO_TEMP_DIR"] = str(out / UPLOAD_DIR)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = build(models, out, device, concurrency, queue_size, max_upload_mb * 2**20)
    demo.launch(
        server_name=host, server_port=port, max_file_size=f"{max_upload_mb}mb", allowed_paths=[str(out)],
        ssr_mode=False, show_error=True, enable_monitoring=False, mcp_server=False, pwa=False,
        footer_links=[], run_history=False, theme=_theme(),
    )  # fmt: skip


def _theme():
    """Gradio's Soft theme on the system's fonts (its default fetches web fonts)."""
    # optional dependency (the ui extra), loaded only when the page is served
    import gradio as gr

    return gr.themes.Soft(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
