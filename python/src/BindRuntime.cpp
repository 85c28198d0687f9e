// Bindings of runtime/: tensor views over caller memory (torch tensors pass data_ptr, element strides,
// dtype and device), flexjit-owned tensors (exposed through the buffer protocol on the CPU and by address
// on a GPU, so Python wraps them without copies), block masks, and flex_attention forward and backward.
//
// The GIL stays held during every call: a traced mod's captures are bound just before the call and read by
// it (or packed into kernel arguments at launch), so no other Python thread may rebind them meanwhile.
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>

#include "Bindings.h"
#include "runtime/AttentionBackward.h"

namespace py = pybind11;

namespace flexjit::python {

namespace {

void* toPointer(uintptr_t address) { return reinterpret_cast<void*>(address); }

std::optional<Tensor> definedOrNone(const Tensor& t) { return t.defined() ? std::optional<Tensor>(t) : std::nullopt; }

/// Shares ownership of a Python object with C++ (a BlockMask's borrowed lists keep their torch tensors alive).
/// The last reference may drop on any thread, so the deleter takes the GIL; at interpreter exit the object
/// is left to the interpreter's own teardown.
std::shared_ptr<void> pythonOwner(py::object object) {
  return std::shared_ptr<void>(new py::object(std::move(object)), [](void* p) {
    auto* o = static_cast<py::object*>(p);
    if (Py_IsInitialized()) {
      py::gil_scoped_acquire gil;
      delete o;
    } else {
      o->release();  // the interpreter is gone: there is no reference count left to decrement
      delete o;
    }
  });
}

AttentionOptions attentionOptions(std::optional<float> scale, uintptr_t stream) {
  AttentionOptions o;
  o.scale = scale;
  o.stream = toPointer(stream);
  return o;
}

void bindViews(py::module_& m) {
  py::enum_<DeviceKind>(m, "DeviceKind").value("CPU", DeviceKind::CPU).value("CUDA", DeviceKind::CUDA);
  py::class_<Device>(m, "Device")
      .def(py::init([](DeviceKind kind, int index) { return Device{kind, index}; }), py::arg("kind"),
           py::arg("index") = 0)
      .def_readonly("kind", &Device::kind)
      .def_readonly("index", &Device::index)
      .def("__str__", &Device::str);
  py::class_<TensorView>(m, "TensorView", "A non-owning strided view (strides in elements, like torch)")
      .def(py::init([](uintptr_t data, DType dtype, Device device, std::vector<int64_t> shape,
                       std::vector<int64_t> strides) {
             return TensorView(toPointer(data), dtype, device, std::move(shape), std::move(strides));
           }),
           py::arg("data_ptr"), py::arg("dtype"), py::arg("device"), py::arg("shape"), py::arg("strides"))
      .def_property_readonly("shape", [](const TensorView& v) { return v.shape; })
      .def_property_readonly("strides", [](const TensorView& v) { return v.strides; })
      .def("describe", &TensorView::describe);
  py::class_<Tensor>(m, "Tensor", py::buffer_protocol(), "A contiguous tensor owned by flexjit")
      .def_property_readonly("shape", &Tensor::shape)
      .def_property_readonly("dtype", &Tensor::dtype)
      .def_property_readonly("device", &Tensor::device)
      .def_property_readonly("data_ptr", [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data()); })
      .def_property_readonly("nbytes", &Tensor::bytes)
      .def_buffer([](Tensor& t) -> py::buffer_info {
        if (t.device().kind != DeviceKind::CPU)
          throw Error("a flexjit tensor on " + t.device().str() + " has no host buffer; read it by address");
        return py::buffer_info(t.data(), 1, py::format_descriptor<uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(t.bytes())}, {static_cast<py::ssize_t>(1)});
      });
}

void bindBlockMask(py::module_& m) {
  py::class_<BlockMask, std::shared_ptr<BlockMask>>(m, "BlockMask")
      .def_readonly("batch", &BlockMask::batch)
      .def_readonly("heads", &BlockMask::heads)
      .def_readonly("len_q", &BlockMask::lenQ)
      .def_readonly("len_kv", &BlockMask::lenKV)
      .def_readonly("block_q", &BlockMask::blockQ)
      .def_readonly("block_kv", &BlockMask::blockKV)
      .def_readonly("num_q_blocks", &BlockMask::numQBlocks)
      .def_readonly("num_kv_blocks", &BlockMask::numKVBlocks)
      .def_property_readonly("stored_batch", &BlockMask::storedBatch)
      .def_property_readonly("stored_heads", &BlockMask::storedHeads)
      .def_property_readonly("device", &BlockMask::device)
      .def_property_readonly("kv_num_blocks", [](const BlockMask& b) { return definedOrNone(b.kvNumBlocks); })
      .def_property_readonly("kv_indices", [](const BlockMask& b) { return definedOrNone(b.kvIndices); })
      .def_property_readonly("full_kv_num_blocks", [](const BlockMask& b) { return definedOrNone(b.fullKvNumBlocks); })
      .def_property_readonly("full_kv_indices", [](const BlockMask& b) { return definedOrNone(b.fullKvIndices); })
      .def_property_readonly("q_num_blocks", [](const BlockMask& b) { return definedOrNone(b.qNumBlocks); })
      .def_property_readonly("q_indices", [](const BlockMask& b) { return definedOrNone(b.qIndices); })
      .def_property_readonly("full_q_num_blocks", [](const BlockMask& b) { return definedOrNone(b.fullQNumBlocks); })
      .def_property_readonly("full_q_indices", [](const BlockMask& b) { return definedOrNone(b.fullQIndices); })
      .def_readonly("mask", &BlockMask::mask)
      .def("sparsity", &BlockMask::sparsity)
      .def("to_string", &BlockMask::toString, py::arg("max_width") = 64, py::arg("max_heads") = 4)
      .def("to", [](const BlockMask& b, Device d) { return std::make_shared<BlockMask>(b.to(d)); })
      .def("to_dense", &BlockMask::toDense);
  m.def("create_block_mask", [](const MaskMod& mask, int64_t B, int64_t H, int64_t Lq, int64_t Lkv, Device device,
                                int blockQ, int blockKV, uintptr_t stream, bool wait) {
    return std::make_shared<BlockMask>(
        createBlockMask(mask, B, H, Lq, Lkv, device, blockQ, blockKV, toPointer(stream), wait));
  }, py::arg("mask"), py::arg("B"), py::arg("H"), py::arg("len_q"), py::arg("len_kv"), py::arg("device"),
     py::arg("block_q"), py::arg("block_kv"), py::arg("stream") = 0, py::arg("wait") = true);
  m.def("create_block_mask_reference", [](const MaskMod& mask, int64_t B, int64_t H, int64_t Lq, int64_t Lkv,
                                          int blockQ, int blockKV) {
    return std::make_shared<BlockMask>(createBlockMaskReference(mask, B, H, Lq, Lkv, blockQ, blockKV));
  }, py::arg("mask"), py::arg("B"), py::arg("H"), py::arg("len_q"), py::arg("len_kv"), py::arg("block_q"),
     py::arg("block_kv"));
  m.def("block_mask_from_kv_blocks", [](const TensorView& kvNum, const TensorView& kvIdx,
                                        std::optional<TensorView> fullNum, std::optional<TensorView> fullIdx,
                                        int blockQ, int blockKV, int64_t lenQ, int64_t lenKV,
                                        std::optional<MaskMod> mask) {
    return std::make_shared<BlockMask>(BlockMask::fromKvBlocks(kvNum, kvIdx, fullNum ? &*fullNum : nullptr,
                                                               fullIdx ? &*fullIdx : nullptr, blockQ, blockKV, lenQ,
                                                               lenKV, std::move(mask)));
  }, py::arg("kv_num_blocks"), py::arg("kv_indices"), py::arg("full_kv_num_blocks"), py::arg("full_kv_indices"),
     py::arg("block_q"), py::arg("block_kv"), py::arg("len_q"), py::arg("len_kv"), py::arg("mask"));
  m.def("block_mask_borrow_lists", [](const std::vector<TensorView>& lists, py::object owner, int64_t B, int64_t H,
                                      int64_t lenQ, int64_t lenKV, int blockQ, int blockKV,
                                      std::optional<MaskMod> mask) {
    if (lists.size() != 8) throw Error("block_mask_borrow_lists: expected the eight block lists");
    BlockMaskListViews v{lists[0], lists[1], lists[2], lists[3], lists[4], lists[5], lists[6], lists[7]};
    return std::make_shared<BlockMask>(BlockMask::borrowLists(v, B, H, lenQ, lenKV, blockQ, blockKV, std::move(mask),
                                                              pythonOwner(std::move(owner))));
  }, py::arg("lists"), py::arg("owner"), py::arg("B"), py::arg("H"), py::arg("len_q"), py::arg("len_kv"),
     py::arg("block_q"), py::arg("block_kv"), py::arg("mask"),
     "A BlockMask over eight int32 lists in flexjit's layout (kv_num_blocks, kv_indices, full_kv_*, q_*, full_q_*), "
     "neither copied nor read; `owner` (the tensors) is kept alive with it");
}

void bindAttention(py::module_& m) {
  m.def("flex_attention_into", [](const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& score,
                                  const BlockMask* blockMask, const TensorView& out, const TensorView& lse,
                                  std::optional<float> scale, uintptr_t stream, bool compileBackwardAhead,
                                  std::optional<SinkMod> sink, std::optional<ProbMod> prob,
                                  std::optional<TensorView> maxScores, std::optional<TensorView> probDelta,
                                  std::optional<TensorView> rowVisible, std::optional<TensorView> pageTable,
                                  int64_t pageSize, std::optional<TensorView> kvLengths) {
    AttentionOptions o = attentionOptions(scale, stream);
    o.compileBackwardAhead = compileBackwardAhead;
    o.sink = std::move(sink);
    o.prob = std::move(prob);
    if (pageTable) o.paged = PagedKV{*pageTable, pageSize};
    o.kvLengths = std::move(kvLengths);
    const ForwardOutputs outputs{out, lse, maxScores ? &*maxScores : nullptr, probDelta ? &*probDelta : nullptr,
                                 rowVisible ? &*rowVisible : nullptr};
    flex_attention_into(q, k, v, score, blockMask, outputs, o);
  }, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("score_mod"), py::arg("block_mask"), py::arg("out"),
     py::arg("lse"), py::arg("scale"), py::arg("stream"), py::arg("compile_backward_ahead") = false,
     py::arg("sink_mod") = std::nullopt, py::arg("prob_mod") = std::nullopt, py::arg("max_scores") = std::nullopt,
     py::arg("prob_delta") = std::nullopt, py::arg("row_visible") = std::nullopt, py::arg("page_table") = std::nullopt,
     py::arg("page_size") = 0, py::arg("kv_lengths") = std::nullopt);
  m.def("flex_attention_backward_into", [](const TensorView& q, const TensorView& k, const TensorView& v,
                                           const TensorView& out, const TensorView& lse, const TensorView& dout,
                                           const ScoreMod& score, const BlockMask* blockMask, const TensorView& dq,
                                           const TensorView& dk, const TensorView& dv,
                                           const std::vector<TensorView>& captureGrads, std::optional<float> scale,
                                           uintptr_t stream, bool deterministic, std::optional<SinkMod> sink,
                                           std::optional<ProbMod> prob, std::optional<TensorView> probDelta,
                                           std::optional<TensorView> rowVisible, std::optional<TensorView> dlse) {
    BackwardOptions o;
    static_cast<AttentionOptions&>(o) = attentionOptions(scale, stream);
    o.deterministic = deterministic;
    o.sink = std::move(sink);
    o.prob = std::move(prob);
    o.probDelta = probDelta ? &*probDelta : nullptr;
    o.rowVisible = rowVisible ? &*rowVisible : nullptr;
    o.dlse = dlse ? &*dlse : nullptr;
    flex_attention_backward_into(q, k, v, out, lse, dout, score, blockMask, dq, dk, dv, captureGrads, o);
  }, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("dout"), py::arg("score_mod"),
     py::arg("block_mask"), py::arg("dq"), py::arg("dk"), py::arg("dv"), py::arg("capture_grads"), py::arg("scale"),
     py::arg("stream"), py::arg("deterministic") = false, py::arg("sink_mod") = std::nullopt,
     py::arg("prob_mod") = std::nullopt, py::arg("prob_delta") = std::nullopt, py::arg("row_visible") = std::nullopt,
     py::arg("grad_lse") = std::nullopt);
  m.def("wait_for_background_compiles", &waitForBackgroundCompiles, py::call_guard<py::gil_scoped_release>(),
        "Joins the backward compiles started in the background (the package calls it at interpreter exit)");
  m.def("gradient_capture_ids", [](const ScoreMod& score, std::optional<SinkMod> sink, std::optional<ProbMod> prob) {
    std::vector<uintptr_t> ids;
    for (const auto& t : gradientCaptures(score, ExtraHooks{std::move(sink), std::move(prob)}))
      ids.push_back(reinterpret_cast<uintptr_t>(t.get()));
    return ids;
  }, py::arg("score_mod"), py::arg("sink_mod") = std::nullopt, py::arg("prob_mod") = std::nullopt,
     "Captures that receive gradients (float, requires_grad): the score_mod's, the sink_mod's, the prob_mod's");
}

}  // namespace

void bindRuntime(py::module_& m) {
  bindViews(m);
  bindBlockMask(m);
  bindAttention(m);
}

}  // namespace flexjit::python
