"""A pure parameter tree over a key table: dotted keys as a module hierarchy with subtotals."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .tensors import KeyTable, TensorInfo


@dataclass(eq=False)
class Node:
    name: str  # last path component
    path: str  # full dotted path ('' for the root)
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    tensor: TensorInfo | None = None  # set on leaves
    module_class: str | None = None
    numel: int = 0  # subtotal
    count: int = 0  # tensors below
    row: int = 0  # index among the parent's children
    uid: int = 0  # position in the tree's pre-order (``ParamTree.nodes``)
    first_leaf: int = 0  # the leaves below are ``ParamTree.leaf_nodes[first_leaf:first_leaf + count]``

    @property
    def info(self) -> TensorInfo:
        """A leaf's tensor, for code that only holds leaves; asking a module for one is a bug."""
        if self.tensor is None:
            raise ValueError(f"{self.path or '(root)'} is a module, not a tensor")
        return self.tensor

    def walk(self) -> Iterator[Node]:
        """Pre-order, without recursion (deep trees, 47k-key models: nested generators are slow)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def leaves(self) -> Iterator[Node]:
        stack = [self]
        while stack:
            node = stack.pop()
            if node.tensor is not None:
                yield node
            stack.extend(reversed(node.children))


class ParamTree:
    """Module hierarchy of a key table; ``leaf(key)`` and ``node(path)`` look nodes up in O(1).

    ``nodes`` lists every node in pre-order and ``leaf_nodes`` every leaf in the same order, so the
    leaves below any module are one contiguous slice: a view can count or colour a module's keys
    without walking it. Both are made here, on the loading thread, not when a view shows the tree.
    """

    def __init__(self, table: KeyTable, module_classes: dict[str, str] | None = None) -> None:
        classes = module_classes or {}
        self.root = Node("", "", module_class=classes.get(""))
        self._nodes: dict[str, Node] = {"": self.root}
        self._leaves: dict[str, Node] = {}
        for key, info in table.items():
            parent = self.root
            parts = key.split(".")
            path = ""
            for part in parts[:-1]:
                path = f"{path}.{part}" if path else part
                node = self._nodes.get(path)
                if node is None or node.tensor is not None:
                    node = Node(part, path, parent, module_class=classes.get(path), row=len(parent.children))
                    parent.children.append(node)
                    self._nodes[path] = node
                parent = node
            leaf = Node(parts[-1], key, parent, tensor=info, numel=info.numel, count=1, row=len(parent.children))
            parent.children.append(leaf)
            self._leaves[key] = leaf
        self._total(self.root)
        self.nodes: list[Node] = list(self.root.walk())
        self.leaf_nodes: list[Node] = []
        for uid, node in enumerate(self.nodes):
            node.uid = uid
            node.first_leaf = len(self.leaf_nodes)
            if node.tensor is not None:
                self.leaf_nodes.append(node)

    def _total(self, node: Node) -> None:
        # iterative post-order: deep trees must not hit the recursion limit
        order, stack = [], [node]
        while stack:
            n = stack.pop()
            order.append(n)
            stack.extend(n.children)
        for n in reversed(order):
            if n.tensor is None:
                n.numel = sum(c.numel for c in n.children)
                n.count = sum(c.count for c in n.children)

    def leaf(self, key: str) -> Node:
        return self._leaves[key]

    def node(self, path: str) -> Node:
        return self._nodes.get(path) or self._leaves[path]

    def __len__(self) -> int:
        return len(self._leaves)

    @property
    def numel(self) -> int:
        return self.root.numel

    def to_dict(self, node: Node | None = None) -> dict:
        node = node or self.root
        out: dict = {"name": node.path, "numel": node.numel, "tensors": node.count}
        if node.module_class:
            out["module"] = node.module_class
        if node.tensor is not None:
            out["shape"] = list(node.tensor.shape)
            out["dtype"] = node.tensor.dtype
        else:
            out["children"] = [self.to_dict(c) for c in node.children]
        return out
