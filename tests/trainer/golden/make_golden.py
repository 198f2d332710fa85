#!/usr/bin/python3
"""Writes yolov5_v7_0.yaml: reference numbers computed by ultralytics YOLOv5 v7.0's own code.

Run from a checkout of ultralytics/yolov5 at tag v7.0 (commit 915bbf294bb7), with Debian's
python3-torch, python3-opencv, python3-yaml, python3-pandas, python3-seaborn, python3-ipython,
python3-git installed:

    cd /path/to/yolov5-v7.0 && /usr/bin/python3 /path/to/ringlink/tests/trainer/golden/make_golden.py OUT.yaml

Only numbers leave this script. The inputs are defined by formulas that the C++ tests
(tests/trainer/test_golden.cc) rebuild exactly; each formula is repeated in the YAML's comments.
"""
import math
import sys

import cv2
import numpy as np
import torch
import yaml

sys.path.insert(0, '.')
from models.yolo import Model  # noqa: E402
from utils.augmentations import augment_hsv  # noqa: E402
from utils.loss import ComputeLoss  # noqa: E402
from utils.metrics import ap_per_class  # noqa: E402
from val import process_batch  # noqa: E402

torch.set_num_threads(1)
NC, IMG, BS = 3, 64, 2


def level_predictions(i, shape):
    """Raw predictions of level i: sin(0.37 n + 0.1 i) * 2 over the flat index n (float32)."""
    n = int(np.prod(shape))
    return (torch.sin(torch.arange(n, dtype=torch.float32) * 0.37 + 0.1 * i) * 2).view(shape)


TARGETS = [  # image, class, x, y, w, h (normalised)
    [0, 0, 0.30, 0.40, 0.20, 0.30],
    [0, 1, 0.72, 0.55, 0.10, 0.12],
    [0, 2, 0.50, 0.50, 0.90, 0.80],
    [1, 0, 0.05, 0.95, 0.08, 0.06],
    [1, 2, 0.61, 0.27, 0.35, 0.18],
    [1, 1, 0.26, 0.74, 0.04, 0.30],
]


def fill_weights(model):
    """Deterministic weights for every floating state_dict entry except the anchors.

    Entries are numbered k = 0, 1, ... in sorted key order; v = sin(0.61 n + k) over the flat index n.
    conv weights (4-D): v / sqrt(numel / shape[0]); biases: 0.1 v; BN weight: 1 + 0.2 v; BN bias and
    running_mean: 0.1 v; BN running_var: 1 + 0.25 (1 + v).
    """
    sd = model.state_dict()
    keys = sorted(k for k, t in sd.items() if t.is_floating_point() and not k.endswith('anchors'))
    for k_index, key in enumerate(keys):
        t = sd[key]
        v = torch.sin(torch.arange(t.numel(), dtype=torch.float32) * 0.61 + k_index).view(t.shape)
        if key.endswith('running_var'):
            v = 1 + 0.25 * (1 + v)
        elif '.bn.' in key and key.endswith('weight'):
            v = 1 + 0.2 * v
        elif key.endswith('bias') or key.endswith('running_mean'):
            v = 0.1 * v
        else:
            v = v / math.sqrt(t.numel() / t.shape[0])
        t.copy_(v)
    return len(keys)


def model_input():
    """Input image (1, 3, 64, 64): 0.5 + 0.5 sin(0.013 n) over the flat index n."""
    n = 3 * IMG * IMG
    return (0.5 + 0.5 * torch.sin(torch.arange(n, dtype=torch.float32) * 0.013)).view(1, 3, IMG, IMG)


def loss_cases(model):
    det = model.model[-1]
    shapes = [(BS, det.na, IMG // s, IMG // s, det.no) for s in (8, 16, 32)]
    preds = [level_predictions(i, s) for i, s in enumerate(shapes)]
    targets = torch.tensor(TARGETS, dtype=torch.float32)
    out = []
    for ls, fl in ((0.0, 0.0), (0.1, 0.0), (0.0, 1.5)):
        with open('data/hyps/hyp.scratch-low.yaml') as f:
            hyp = yaml.safe_load(f)
        nl = det.nl
        hyp['box'] *= 3 / nl  # train.py's rescaling
        hyp['cls'] *= NC / 80 * 3 / nl
        hyp['obj'] *= (IMG / 640) ** 2 * 3 / nl
        hyp['label_smoothing'] = ls
        hyp['fl_gamma'] = fl
        model.hyp = hyp
        loss, items = ComputeLoss(model)(preds, targets)
        out.append({'label_smoothing': ls, 'fl_gamma': fl, 'total': float(loss.item()),
                    'lbox': float(items[0]), 'lobj': float(items[1]), 'lcls': float(items[2])})
    tcls, tbox, indices, anch = ComputeLoss(model).build_targets(preds, targets)
    levels = []
    for i in range(det.nl):
        b, a, gj, gi = indices[i]
        levels.append({'n': int(b.numel()), 'sum_b': int(b.sum()), 'sum_a': int(a.sum()), 'sum_gj': int(gj.sum()),
                       'sum_gi': int(gi.sum()), 'sum_cls': int(tcls[i].sum()),
                       'sum_tbox': [float(x) for x in tbox[i].sum(0)], 'sum_anchors': [float(x) for x in anch[i].sum(0)]})
    return out, levels


def forward_case():
    model = Model('models/yolov5n.yaml', ch=3, nc=NC).eval()
    filled = fill_weights(model)
    with torch.no_grad():
        y = model(model_input())[0][0]  # (N, 8) decoded: xywh pixels, obj, classes
    counts = [3 * (IMG // s) ** 2 for s in (8, 16, 32)]
    per_level, start = [], 0
    for c in counts:
        per_level.append([float(x) for x in y[start:start + c].double().sum(0)])
        start += c
    rows = [[float(x) for x in y[r]] for r in (0, 1, 100, 250)]
    return {'filled_entries': filled, 'rows_per_level': counts, 'column_sums_per_level': per_level,
            'rows': {r: v for r, v in zip((0, 1, 100, 250), rows)}}


def fused_counts():
    out = {}
    for name in ('yolov5n', 'yolov5s'):
        m = Model(f'models/{name}.yaml').eval().fuse()
        out[name] = {'layers': len(list(m.modules())), 'parameters': sum(p.numel() for p in m.parameters())}
    return out


def metrics_case():
    """Detections and labels (pixels) for 4 images; every class keeps a missed label so no
    recall curve reaches 1 (where this trainer reads AP differently, see docs/trainer.md)."""
    rs = np.random.RandomState(7)
    images, confs = [], list(rs.permutation(200)[:200])
    for img in range(4):
        labels, dets = [], []
        for _ in range(rs.randint(3, 6)):
            c = int(rs.randint(0, NC))
            x1, y1 = rs.uniform(0, 200), rs.uniform(0, 200)
            w, h = rs.uniform(15, 80), rs.uniform(15, 80)
            labels.append([c, x1, y1, x1 + w, y1 + h])
            for _ in range(rs.choice([0, 1, 1, 1, 2])):  # missed, found, or found twice
                j = rs.uniform(-0.18, 0.18, 4) * [w, h, w, h]
                dc = c if rs.uniform() < 0.85 else int((c + 1) % NC)
                dets.append([x1 + j[0], y1 + j[1], x1 + w + j[2], y1 + h + j[3], 0, dc])
        for _ in range(rs.randint(1, 4)):  # false positives
            x1, y1 = rs.uniform(0, 200), rs.uniform(0, 200)
            dets.append([x1, y1, x1 + rs.uniform(10, 60), y1 + rs.uniform(10, 60), 0, int(rs.randint(0, NC))])
        images.append((labels, dets))
    for c in range(NC):  # one label per class that nothing detects
        images[c % 4][0].append([c, 300.0 + 20 * c, 300.0, 315.0 + 20 * c, 320.0])
    stats, out_images = [], []
    k = 0
    for labels, dets in images:
        lab = np.round(np.array(labels, dtype=np.float64), 2)
        det = np.round(np.array(dets, dtype=np.float64), 2)
        for d in det:
            d[4] = (confs[k] + 1) / 201.0  # distinct confidences
            k += 1
        lt, dt = torch.tensor(lab, dtype=torch.float32), torch.tensor(det, dtype=torch.float32)
        correct = process_batch(dt, lt, torch.linspace(0.5, 0.95, 10))
        stats.append((correct, dt[:, 4], dt[:, 5], lt[:, 0]))
        out_images.append({'labels': lt.tolist(), 'detections': dt.tolist()})
    st = [torch.cat(x, 0).cpu().numpy() for x in zip(*stats)]
    names = {c: str(c) for c in range(NC)}
    tp, fp, p, r, f1, ap, ap_class = ap_per_class(*st, names=names)
    # The same AP code on perfect detections of one label, for the documented 0.995.
    perfect = ap_per_class(np.ones((1, 10), bool), np.array([0.9]), np.array([0.0]), np.array([0.0]), names=names)[5]
    return {'images': out_images, 'tp_count': int(st[0][:, 0].sum()), 'classes': [int(c) for c in ap_class],
            'p': p.tolist(), 'r': r.tolist(), 'ap50': ap[:, 0].tolist(), 'ap': ap.mean(1).tolist(),
            'mp': float(p.mean()), 'mr': float(r.mean()), 'map50': float(ap[:, 0].mean()), 'map': float(ap.mean()),
            'perfect_ap50': float(perfect[0, 0])}


def hsv_case():
    """An 8 x 16 RGB image (R, G, B at (x, y) = (37x + 91y + 53c) mod 256) through augment_hsv."""
    h, w = 8, 16
    rgb = np.zeros((h, w, 3), np.uint8)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                rgb[y, x, c] = (37 * x + 91 * y + 53 * c) % 256
    gains = (0.015, 0.7, 0.4)
    np.random.seed(3)
    r = np.random.uniform(-1, 1, 3) * list(gains) + 1  # the draw augment_hsv makes after this seed
    np.random.seed(3)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    augment_hsv(bgr, *gains)
    out = np.ascontiguousarray(bgr[:, :, ::-1])
    return {'gains': [float(x) for x in r], 'width': w, 'height': h, 'rgb_hex': out.tobytes().hex()}


def main(path):
    model = Model('models/yolov5n.yaml', ch=3, nc=NC)
    det = model.model[-1]
    losses, levels = loss_cases(model)
    doc = {
        'source': 'ultralytics/yolov5 v7.0 (915bbf294bb7), torch ' + torch.__version__ + ', opencv ' + cv2.__version__,
        'anchors_grid': det.anchors.view(-1).tolist(),
        'targets': TARGETS,
        'loss': losses,
        'build_targets': levels,
        'forward': forward_case(),
        'fused': fused_counts(),
        'metrics': metrics_case(),
        'hsv': hsv_case(),
    }
    with open(path, 'w') as f:
        f.write('# Reference values from ultralytics YOLOv5 v7.0, written by tests/trainer/golden/make_golden.py\n')
        f.write('# (see that script for the exact command and the formulas that define the inputs).\n')
        yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=None, width=120)


if __name__ == '__main__':
    main(sys.argv[1])
