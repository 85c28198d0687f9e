// Implementation of Module.h.
#include "runtime/Module.h"

#include <fmt/format.h>

#include "dsl/Error.h"
#include "runtime/Arch.h"
#include "runtime/CudaDriver.h"

namespace flexjit {

namespace {

/// Driver errors that mean "this image cannot run here": wrong arch, or a driver older than the NVRTC
/// that produced the image.
bool isImageMismatch(CUresult result) {
  return result == CUDA_ERROR_NO_BINARY_FOR_GPU || result == CUDA_ERROR_INVALID_IMAGE ||
         result == CUDA_ERROR_UNSUPPORTED_PTX_VERSION || result == CUDA_ERROR_INVALID_PTX;
}

CUmodule loadImage(const CudaDriver& driver, const CompiledKernel& kernel) {
  if (kernel.cubin.empty() && kernel.ptx.empty())
    throw Error(fmt::format("kernel '{}' has neither cubin nor PTX to load", kernel.name));
  const void* image = kernel.cubin.empty() ? static_cast<const void*>(kernel.ptx.c_str())
                                           : static_cast<const void*>(kernel.cubin.data());
  CUmodule module = nullptr;
  CUresult result = driver.api().cuModuleLoadData(&module, image);
  if (isImageMismatch(result)) {
    CUdevice device = driver.currentDevice();
    int major = driver.deviceAttribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device);
    int minor = driver.deviceAttribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device);
    std::string wanted = major >= kMinComputeMajor ? archForDevice(major, minor) : std::string("(unsupported)");
    try {
      driver.check(result, "cuModuleLoadData");
    } catch (const Error& e) {
      throw Error(fmt::format(
          "{}\nwhile loading kernel '{}' (compiled for {} by NVRTC {}) on {} (compute capability {}.{}, driver "
          "for CUDA {}). This GPU needs {}; if the kernel already targets it, the driver is older than NVRTC: "
          "update the NVIDIA driver.",
          e.what(), kernel.name, kernel.arch, kernel.toolkitVersion, driver.deviceName(device), major, minor,
          cudaVersionText(driver.driverVersion()), wanted));
    }
  }
  driver.check(result, "cuModuleLoadData");
  return module;
}

}  // namespace

ResourceUsage driverResourceUsage(const LoadedKernel& kernel) {
  ResourceUsage usage;
  usage.registers = kernel.registers;
  usage.staticSharedBytes = kernel.staticSharedBytes;
  usage.constantBytes = kernel.constantBytes;
  usage.stackFrameBytes = kernel.localBytes;
  return usage;
}

ModuleCache::~ModuleCache() {
  if (modules_.empty()) return;  // also the only case without a driver: nothing was ever loaded
  const DriverApi& api = CudaDriver::get().api();
  for (auto& entry : modules_)
    if (entry.second.module != nullptr) api.cuModuleUnload(entry.second.module);  // errors cannot be reported
}

ModuleCache& ModuleCache::global() {
  // Leaked on purpose: unloading modules from a static destructor races driver teardown at exit.
  static ModuleCache* cache = new ModuleCache();
  return *cache;
}

LoadedKernel ModuleCache::load(const CompiledKernel& kernel, size_t dynamicSharedBytes, const std::string& function) {
  CudaDriver& driver = CudaDriver::get();
  CUcontext context = driver.currentContext();
  if (context == nullptr)
    throw Error(fmt::format("loading kernel '{}' needs a current CUDA context: call it inside a "
                            "flexjit::ScopedContext for the target device",
                            kernel.name));
  const std::string& name = function.empty() ? kernel.name : function;
  std::lock_guard<std::mutex> lock(mutex_);
  LoadedKernel& loaded = functionFor(moduleFor(kernel, context), name, context);
  if (dynamicSharedBytes > static_cast<size_t>(loaded.maxDynamicSharedBytes))
    raiseDynamicShared(loaded, dynamicSharedBytes, name);
  return loaded;
}

ModuleCache::Module& ModuleCache::moduleFor(const CompiledKernel& kernel, CUcontext context) {
  Module& module = modules_[{kernel.key, context}];
  if (module.module == nullptr) module.module = loadImage(CudaDriver::get(), kernel);
  return module;
}

LoadedKernel& ModuleCache::functionFor(Module& module, const std::string& name, CUcontext context) {
  auto it = module.functions.find(name);
  if (it != module.functions.end()) return it->second;
  const CudaDriver& driver = CudaDriver::get();
  LoadedKernel loaded;
  loaded.module = module.module;
  loaded.context = context;
  loaded.function = driver.moduleFunction(module.module, name);
  loaded.registers = driver.functionAttribute(CU_FUNC_ATTRIBUTE_NUM_REGS, loaded.function);
  loaded.staticSharedBytes = driver.functionAttribute(CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, loaded.function);
  loaded.localBytes = driver.functionAttribute(CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, loaded.function);
  loaded.constantBytes = driver.functionAttribute(CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES, loaded.function);
  loaded.maxThreadsPerBlock = driver.functionAttribute(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, loaded.function);
  loaded.maxDynamicSharedBytes =
      driver.functionAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, loaded.function);
  return module.functions.emplace(name, loaded).first->second;
}

void ModuleCache::raiseDynamicShared(LoadedKernel& loaded, size_t bytes, const std::string& name) {
  const CudaDriver& driver = CudaDriver::get();
  CUdevice device = driver.currentDevice();
  int optin = driver.deviceAttribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device);
  // The opt-in limit covers static and dynamic shared memory together.
  size_t available = static_cast<size_t>(optin) - static_cast<size_t>(loaded.staticSharedBytes);
  if (bytes > available)
    throw Error(fmt::format("kernel '{}' asks for {} bytes of dynamic shared memory, but {} allows at most {} "
                            "per block ({} opt-in minus {} static); use smaller tiles",
                            name, bytes, driver.deviceName(device), available, optin, loaded.staticSharedBytes));
  driver.setFunctionAttribute(loaded.function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                              static_cast<int>(bytes));
  loaded.maxDynamicSharedBytes = static_cast<int>(bytes);
}

}  // namespace flexjit
