"""Rewrite tf2onnx's ViT graph into the ops ONNX Runtime has fast kernels for.

tf2onnx spells a Keras ViT in ~20 small ops per encoder block that ONNX Runtime fuses none of
(measured: its session optimizer and `onnxruntime.transformers.optimizer`, model types vit,
bert_tf and bert_keras, fused nothing): LayerNorm as GlobalAveragePool/Sub/Mul/Sqrt/
Reciprocal/Neg/Mul/Add, every Dense as Shape/Cast/Gather/Concat/Cast/Reshape/MatMul/Reshape,
GELU as Mul/Erf/Add/Mul/Mul, attention as Split/Reshape/Transpose/Mul/MatMul/Softmax/MatMul/
Transpose/Reshape. On a small ViT most of the run time is the per-op overhead of these.

Each pass matches one of those patterns exactly (constants checked) and replaces it with the
same math in one op; anything that does not match is left alone, so the passes are safe on
graphs from other converters. Used for fp32 and int8 alike (the float artifact gets the same
graph, so an int8 speed-up is quantization's, not the rewrite's).

  * `fold_tensordot`: Reshape(x, [-1, K]) -> MatMul(W) -> Reshape(shape(x)[:-1] + [M])
    becomes MatMul(x, W) (ONNX MatMul broadcasts over leading dimensions).
  * `fuse_layernorm`: -> LayerNormalization (opset 17, standard ONNX).
  * `fuse_gelu`: -> com.microsoft Gelu (exact erf GELU; ORT then fuses the bias Add into it).
  * `fuse_attention`: -> com.microsoft MultiHeadAttention (Q, K, V in, heads merged out).
  * `patchify_conv`: the stride-P patch-embedding Conv -> patches + MatMul (quantizes as one).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

MS_DOMAIN = "com.microsoft"


@dataclass
class Graph:
    """Indexes over an onnx GraphProto: producers, consumers, constant values."""

    proto: object  # onnx.ModelProto
    producer: dict = field(default_factory=dict)
    consumers: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)

    def __post_init__(self):
        from onnx import numpy_helper

        self.constants = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.reindex()

    @property
    def graph(self):
        return self.proto.graph

    def reindex(self) -> None:
        self.producer, self.consumers = {}, {}
        for node in self.graph.node:
            for out in node.output:
                self.producer[out] = node
            for inp in dict.fromkeys(node.input):  # Mul(d, d) uses d once, not twice
                self.consumers.setdefault(inp, []).append(node)

    def const(self, name: str):
        return self.constants.get(name)

    def only_consumer(self, name: str, op_type: str | None = None):
        users = self.consumers.get(name, [])
        if len(users) != 1 or name in self.graph_outputs:
            return None
        return users[0] if op_type is None or users[0].op_type == op_type else None

    @property
    def graph_outputs(self) -> set:
        return {o.name for o in self.graph.output}

    def parent(self, node, index: int, op_type: str | None = None):
        if index >= len(node.input):
            return None
        p = self.producer.get(node.input[index])
        return p if p is not None and (op_type is None or p.op_type == op_type) else None

    def add_initializer(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.constants[name] = value
        return name


def _current(g: Graph, op_type: str):
    """Nodes of `op_type`, each fetched afresh: a rewrite rebuilds the node list (new objects)."""
    for out in [n.output[0] for n in g.graph.node if n.op_type == op_type]:
        node = g.producer.get(out)
        if node is not None and node.op_type == op_type:
            yield node


def _scalar(value, target: float, tol: float = 1e-4) -> bool:
    return value is not None and np.size(value) == 1 and abs(float(np.ravel(value)[0]) - target) <= tol


def _split_const(g: Graph, node):
    """(other input, constant value) of a binary node with one constant input, else (None, None)."""
    a, b = node.input[0], node.input[1]
    if g.const(b) is not None and g.const(a) is None:
        return a, g.const(b)
    if g.const(a) is not None and g.const(b) is None:
        return b, g.const(a)
    return None, None


def _other(node, name: str):
    """The input of a binary node that is not `name` (None if neither or both are)."""
    a, b = node.input[0], node.input[1]
    if a == name and b != name:
        return b
    if b == name and a != name:
        return a
    return None


def _replace(g: Graph, remove: list, add: list) -> None:
    """Swap nodes, keeping the graph topologically sorted (new nodes where the first old was)."""
    ids = {id(n) for n in remove}
    nodes = list(g.graph.node)
    first = min(i for i, n in enumerate(nodes) if id(n) in ids)
    kept = [n for n in nodes if id(n) not in ids]
    position = sum(1 for n in nodes[:first] if id(n) not in ids)
    new = kept[:position] + list(add) + kept[position:]
    del g.graph.node[:]
    g.graph.node.extend(new)
    g.reindex()


def remove_dead_nodes(g: Graph) -> int:
    """Drop nodes whose outputs nobody uses, and unused initializers; returns nodes removed."""
    removed = 0
    while True:
        used = set(g.graph_outputs)
        for node in g.graph.node:
            used.update(node.input)
        dead = [n for n in g.graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        ids = {id(n) for n in dead}
        kept = [n for n in g.graph.node if id(n) not in ids]
        del g.graph.node[:]
        g.graph.node.extend(kept)
        removed += len(dead)
    used = {i for n in g.graph.node for i in n.input} | g.graph_outputs
    keep = [i for i in g.graph.initializer if i.name in used]
    del g.graph.initializer[:]
    g.graph.initializer.extend(keep)
    g.reindex()
    return removed


# ------------------------------------------------------------------------------ passes ----
def fold_tensordot(g: Graph) -> int:
    """Reshape -> MatMul(const W) -> Reshape(back to x's leading dims) => MatMul(x, W)."""
    from onnx import helper

    count = 0
    for mm in _current(g, "MatMul"):
        w = g.const(mm.input[1])
        pre = g.parent(mm, 0, "Reshape")
        post = g.only_consumer(mm.output[0], "Reshape")
        if w is None or w.ndim != 2 or pre is None or post is None:
            continue
        flat = g.const(pre.input[1])
        if flat is None or list(flat) != [-1, w.shape[0]]:
            continue
        x = pre.input[0]
        if not _shape_is_leading_dims_of(g, post.input[1], x, w.shape[1]):
            continue
        new = helper.make_node("MatMul", [x, mm.input[1]], [post.output[0]], name=mm.name)
        remove = [mm, post] + ([pre] if g.only_consumer(pre.output[0]) is mm else [])
        _replace(g, remove, [new])
        count += 1
    return count


def _shape_is_leading_dims_of(g: Graph, shape_name: str, x: str, last: int) -> bool:
    """True if `shape_name` computes concat(shape(x)[:-1], [last]) (tf2onnx's Tensordot)."""
    node = g.producer.get(shape_name)
    while node is not None and node.op_type == "Cast":
        node = g.parent(node, 0)
    if node is None or node.op_type != "Concat" or len(node.input) != 2:
        return False
    tail = g.const(node.input[1])
    if tail is None or list(np.ravel(tail)) != [last]:
        return False
    gather = g.parent(node, 0, "Gather")
    if gather is None:
        return False
    shape = g.parent(gather, 0)
    while shape is not None and shape.op_type == "Cast":
        shape = g.parent(shape, 0)
    indices = g.const(gather.input[1])
    return (shape is not None and shape.op_type == "Shape" and shape.input[0] == x
            and indices is not None and list(np.ravel(indices)) == [0, 1])


def fuse_layernorm(g: Graph) -> int:
    """tf2onnx's LayerNorm over the last axis of a rank-3 tensor => LayerNormalization."""
    from onnx import helper

    count = 0
    for mean in _current(g, "GlobalAveragePool"):
        x = mean.input[0]
        users = g.consumers.get(mean.output[0], [])
        sub = next((u for u in users if u.op_type == "Sub" and list(u.input) == [x, mean.output[0]]), None)
        neg = next((u for u in users if u.op_type == "Neg"), None)
        if sub is None or neg is None or len(users) != 2:
            continue
        sq = g.only_consumer(sub.output[0], "Mul")
        if sq is None or list(sq.input) != [sub.output[0]] * 2:
            continue
        var = g.only_consumer(sq.output[0], "GlobalAveragePool")
        add_eps = var and g.only_consumer(var.output[0], "Add")
        if add_eps is None:
            continue
        _, eps = _split_const(g, add_eps)
        sqrt = g.only_consumer(add_eps.output[0], "Sqrt")
        recip = sqrt and g.only_consumer(sqrt.output[0], "Reciprocal")
        scale = recip and g.only_consumer(recip.output[0], "Mul")
        if eps is None or np.size(eps) != 1 or scale is None:
            continue
        _, gamma = _split_const(g, scale)
        scaled = g.consumers.get(scale.output[0], [])
        mul_x = next((u for u in scaled if u.op_type == "Mul" and _other(u, scale.output[0]) == x), None)
        mul_m = next((u for u in scaled if u.op_type == "Mul" and _other(u, scale.output[0]) == neg.output[0]), None)
        if gamma is None or len(scaled) != 2 or mul_x is None or mul_m is None:
            continue
        width = gamma.shape[-1]
        if gamma.size != width:
            continue
        # Tail: Add(mul_x, mul_m) [no beta] or Add(mul_m, beta) then Add(mul_x, that).
        removed = [mean, sub, neg, sq, var, add_eps, sqrt, recip, scale, mul_x, mul_m]
        beta = np.zeros(width, np.float32)
        nxt = g.only_consumer(mul_m.output[0], "Add")
        if nxt is None:
            continue
        if _other(nxt, mul_m.output[0]) == mul_x.output[0]:
            out_node = nxt
        else:
            _, b = _split_const(g, nxt)
            final = g.only_consumer(nxt.output[0], "Add")
            if b is None or b.size != width or final is None or _other(final, nxt.output[0]) != mul_x.output[0]:
                continue
            beta = b.reshape(width).astype(np.float32)
            removed.append(nxt)
            out_node = final
        if g.only_consumer(mul_x.output[0]) is not out_node:
            continue
        removed.append(out_node)
        base = out_node.name or f"layernorm_{count}"
        gname = g.add_initializer(f"{base}/gamma", gamma.reshape(width).astype(np.float32))
        bname = g.add_initializer(f"{base}/beta", beta)
        ln = helper.make_node("LayerNormalization", [x, gname, bname], [out_node.output[0]], name=base,
                              axis=-1, epsilon=float(np.ravel(eps)[0]))
        _replace(g, removed, [ln])
        count += 1
    return count


def fuse_gelu(g: Graph) -> int:
    """0.5 * x * (1 + erf(x / sqrt(2))), as tf2onnx writes it => com.microsoft Gelu."""
    from onnx import helper

    count = 0
    for erf in _current(g, "Erf"):
        pre = g.parent(erf, 0, "Mul")
        if pre is None:
            continue
        x, c = _split_const(g, pre)
        if not _scalar(c, 1 / math.sqrt(2)) or g.only_consumer(pre.output[0]) is not erf:
            continue
        plus = g.only_consumer(erf.output[0], "Add")
        if plus is None:
            continue
        _, one = _split_const(g, plus)
        if not _scalar(one, 1.0):
            continue
        half = next((u for u in g.consumers.get(x, []) if u.op_type == "Mul" and u is not pre
                     and _scalar(_split_const(g, u)[1], 0.5)), None)
        if half is None:
            continue
        final = g.only_consumer(plus.output[0], "Mul")
        if final is None or _other(final, plus.output[0]) != half.output[0] or g.only_consumer(half.output[0]) is not final:
            continue
        node = helper.make_node("Gelu", [x], [final.output[0]], name=final.name or f"gelu_{count}", domain=MS_DOMAIN)
        _replace(g, [pre, erf, plus, half, final], [node])
        count += 1
    return count


def fuse_attention(g: Graph) -> int:
    """Split(qkv) -> per-head reshape/transpose -> scaled softmax(QK^T)V -> merge heads
    => com.microsoft MultiHeadAttention(Q, K, V) (scale 1/sqrt(head_dim), as the model has)."""
    from onnx import helper

    count = 0
    for split in _current(g, "Split"):
        if len(split.output) != 3:
            continue
        q_out, k_out, v_out = split.output
        # Q: Reshape(4-D) -> Mul(scale) -> Transpose(0,2,1,3)
        q_rs = g.only_consumer(q_out, "Reshape")
        q_mul = q_rs and g.only_consumer(q_rs.output[0], "Mul")
        q_tr = q_mul and g.only_consumer(q_mul.output[0], "Transpose")
        k_rs = g.only_consumer(k_out, "Reshape")
        k_tr = k_rs and g.only_consumer(k_rs.output[0], "Transpose")
        v_rs = g.only_consumer(v_out, "Reshape")
        v_tr = v_rs and g.only_consumer(v_rs.output[0], "Transpose")
        if None in (q_rs, q_mul, q_tr, k_rs, k_tr, v_rs, v_tr):
            continue
        shape = g.const(q_rs.input[1])
        if shape is None or len(shape) != 4 or any(g.const(n.input[1]) is None or list(g.const(n.input[1])) != list(shape)
                                                   for n in (k_rs, v_rs)):
            continue
        heads, head_dim = int(shape[2]), int(shape[3])
        _, scale = _split_const(g, q_mul)
        if not _scalar(scale, 1 / math.sqrt(head_dim), 1e-6):
            continue
        if (_perm(q_tr) != [0, 2, 1, 3] or _perm(k_tr) != [0, 2, 3, 1] or _perm(v_tr) != [0, 2, 1, 3]):
            continue
        qk = g.only_consumer(q_tr.output[0], "MatMul")
        if qk is None or list(qk.input) != [q_tr.output[0], k_tr.output[0]] or g.only_consumer(k_tr.output[0]) is not qk:
            continue
        soft = g.only_consumer(qk.output[0], "Softmax")
        if soft is None or _attr(soft, "axis", -1) not in (-1, 3):
            continue
        av = g.only_consumer(soft.output[0], "MatMul")
        if av is None or list(av.input) != [soft.output[0], v_tr.output[0]] or g.only_consumer(v_tr.output[0]) is not av:
            continue
        merge_tr = g.only_consumer(av.output[0], "Transpose")
        merge_rs = merge_tr and g.only_consumer(merge_tr.output[0], "Reshape")
        if merge_rs is None or _perm(merge_tr) != [0, 2, 1, 3]:
            continue
        merged = g.const(merge_rs.input[1])
        if merged is None or len(merged) != 3 or int(merged[2]) != heads * head_dim:
            continue
        name = merge_rs.name or f"attention_{count}"
        node = helper.make_node("MultiHeadAttention", [q_out, k_out, v_out], [merge_rs.output[0]], name=name,
                                domain=MS_DOMAIN, num_heads=heads)
        _replace(g, [q_rs, q_mul, q_tr, k_rs, k_tr, v_rs, v_tr, qk, soft, av, merge_tr, merge_rs], [node])
        count += 1
    return count


def patchify_conv(g: Graph) -> int:
    """Transpose(NHWC->NCHW) -> Conv(kernel = stride = P, no padding) -> Transpose(->NHWC)
    -> Reshape(-1, tokens, D)  =>  cut into patches (Reshape/Transpose/Reshape) -> MatMul + Add.

    Same math; the patch embedding then quantizes as a MatMul (ONNX Runtime's ConvInteger was
    ~2x slower than its float Conv here, its int8 MatMul ~2x faster than the float one)."""
    from onnx import helper

    count = 0
    for conv in _current(g, "Conv"):
        w = g.const(conv.input[1])
        bias = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        pre = g.parent(conv, 0, "Transpose")
        post = g.only_consumer(conv.output[0], "Transpose")
        flat = post and g.only_consumer(post.output[0], "Reshape")
        if w is None or w.ndim != 4 or pre is None or flat is None or _perm(pre) != [0, 3, 1, 2] or _perm(post) != [0, 2, 3, 1]:
            continue
        d, c, ph, pw = w.shape
        if (list(_attr(conv, "strides", [1, 1])) != [ph, pw] or list(_attr(conv, "kernel_shape", [ph, pw])) != [ph, pw]
                or any(_attr(conv, "pads", [0, 0, 0, 0])) or list(_attr(conv, "dilations", [1, 1])) != [1, 1]
                or _attr(conv, "group", 1) != 1 or _attr(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            continue
        shape = _static_shape(g, pre.input[0])
        target = g.const(flat.input[1])
        if shape is None or len(shape) != 4 or target is None or len(target) != 3 or int(target[2]) != d:
            continue
        _, h, wd, ch = shape
        if ch != c or h % ph or wd % pw or int(target[1]) != (h // ph) * (wd // pw):
            continue
        base = conv.name or f"patchify_{count}"
        image = pre.input[0]
        s1 = g.add_initializer(f"{base}/grid_shape", np.array([-1, h // ph, ph, wd // pw, pw, c], np.int64))
        s2 = g.add_initializer(f"{base}/patch_shape", np.array([-1, (h // ph) * (wd // pw), ph * pw * c], np.int64))
        # Conv weight (D, C, kh, kw) -> rows ordered (kh, kw, C) like the patches below.
        kernel = g.add_initializer(f"{base}/kernel", np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(ph * pw * c, d)))
        nodes = [
            helper.make_node("Reshape", [image, s1], [f"{base}/grid"], name=f"{base}/grid"),
            helper.make_node("Transpose", [f"{base}/grid"], [f"{base}/patches6d"], name=f"{base}/transpose",
                             perm=[0, 1, 3, 2, 4, 5]),
            helper.make_node("Reshape", [f"{base}/patches6d", s2], [f"{base}/patches"], name=f"{base}/patches"),
        ]
        if bias is None:
            nodes.append(helper.make_node("MatMul", [f"{base}/patches", kernel], [flat.output[0]], name=f"{base}/matmul"))
        else:
            b = g.add_initializer(f"{base}/bias", bias.astype(np.float32))
            nodes += [helper.make_node("MatMul", [f"{base}/patches", kernel], [f"{base}/projected"], name=f"{base}/matmul"),
                      helper.make_node("Add", [f"{base}/projected", b], [flat.output[0]], name=f"{base}/bias_add")]
        remove = [conv, post, flat] + ([pre] if g.only_consumer(pre.output[0]) is conv else [])
        _replace(g, remove, nodes)
        count += 1
    return count


def _static_shape(g: Graph, name: str) -> list | None:
    """The shape of a graph input with every dimension but the first known, else None."""
    for value in g.graph.input:
        if value.name == name:
            dims = value.type.tensor_type.shape.dim
            out = [d.dim_value if d.HasField("dim_value") else None for d in dims]
            return out if all(v for v in out[1:]) else None
    return None


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _perm(node) -> list | None:
    p = _attr(node, "perm")
    return list(p) if p is not None else None


def _declare_contrib_outputs(model) -> None:
    """Float type for every com.microsoft op's output: ONNX's own shape inference does not know
    those ops, and ONNX Runtime's quantizer needs each tensor's type ("Unable to find data type")."""
    from onnx import TensorProto, helper

    known = {v.name for v in model.graph.value_info} | {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.domain == MS_DOMAIN:
            for out in node.output:
                if out not in known:
                    model.graph.value_info.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))


PASSES = {
    "patchify": patchify_conv,
    "tensordot": fold_tensordot,
    "layernorm": fuse_layernorm,
    "gelu": fuse_gelu,
    "attention": fuse_attention,
}
DEFAULT_PASSES = ("patchify", "tensordot", "layernorm", "gelu", "attention")


def simplify(proto, passes=DEFAULT_PASSES) -> tuple[object, dict]:
    """A rewritten copy of `proto` and {pass: matches, "nodes_before", "nodes_after"}."""
    from onnx import helper

    model = type(proto)()
    model.CopyFrom(proto)
    g = Graph(model)
    report = {"nodes_before": len(model.graph.node)}
    for name in passes:
        report[name] = PASSES[name](g)
    remove_dead_nodes(g)
    _declare_contrib_outputs(model)
    if any(n.domain == MS_DOMAIN for n in model.graph.node) and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    report["nodes_after"] = len(model.graph.node)
    report["op_types"] = dict(Counter(n.op_type for n in model.graph.node).most_common())
    return model, report
