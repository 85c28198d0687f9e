// The row / column split of a mod: what a score_mod or mask_mod computes from (b, h, q_idx) alone, or from
// (b, h, kv_idx) alone, is emitted as separate functions, so that a kernel evaluates it once per row or once
// per column of its tile instead of once per element (`doc[q_idx]`, `G[b][h][q_idx]`, `q_idx // W`, `slope[h]`
// are row values; `doc[kv_idx]`, `G[b][h][kv_idx]` column values).
//
// For a mod NAME (score_mod / mask_mod) with something worth hoisting, emitSplit gives
//   struct NAME_Row { T r0; T r1; ... };            the row values the rest of the mod reads
//   struct NAME_Col { T c0; ... };                  the column values
//   NAME_Row NAME_row(int b, int h, int q_idx, cap);
//   NAME_Col NAME_col(int b, int h, int kv_idx, cap);
//   R NAME_split([float score,] int b, int h, int q_idx, int kv_idx, const NAME_Row& row, const NAME_Col& col, cap);
// and NAME_split(score, b, h, q, kv, NAME_row(b, h, q), NAME_col(b, h, kv)) computes exactly NAME(score, b, h,
// q, kv): the same ops in the same order, only evaluated in three places (tests/unit/codegen_host_test.cpp
// checks it bit for bit). Values that depend on neither q_idx nor kv_idx (`slope[h]`) go with the row.
#pragma once

#include <string>
#include <vector>

#include "codegen/FunctionEmitter.h"

namespace flexjit {

class SplitEmitter : public ScalarEmitter {
 public:
  /// The split of `fn` emitted as `name`_Row, `name`_row, ... (see the file comment); empty when the row and
  /// column parts together hold less than one load, division or two plain ops (nothing worth hoisting).
  std::string emitSplit(mlir::func::FuncOp fn, const std::string& name);

  /// Tensor loads of `fn` that the split cannot hoist: their index depends on q_idx and kv_idx together
  /// (or on the score), so every element of a tile performs them (relative_bias's bias[h][q - kv]).
  int elementLoads(mlir::func::FuncOp fn);

 protected:
  std::string paramList(mlir::func::FuncOp fn) const override;
  bool emitOp(mlir::Operation* op) override;

 private:
  enum class Part { Row, Col, Rest };
  /// Classifies every op and collects the row and column values the rest reads (the frontier).
  void analyze(mlir::func::FuncOp fn);
  /// The ops a part emits: the cone of its frontier (Row, Col), or every op the rest needs (Rest).
  void selectPart(mlir::func::FuncOp fn, Part part);
  std::string emitPart(mlir::func::FuncOp fn, const std::string& name, Part part);
  int hoistedCost() const;

  llvm::DenseMap<mlir::Operation*, unsigned> deps_;  ///< params each op depends on (bit set, see .cpp)
  std::vector<mlir::Value> rowValues_, colValues_;   ///< the frontier, in op order
  llvm::DenseSet<mlir::Operation*> selected_;        ///< ops of the part being emitted
  Part part_ = Part::Rest;
  std::string name_;
};

}  // namespace flexjit
