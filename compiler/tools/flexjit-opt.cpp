// flexjit-opt: runs any flexjit pass on a .mlir file (lit tests, debugging).
#include "compiler/OptMain.h"

int main(int argc, char** argv) { return flexjit::optMain(argc, argv); }
