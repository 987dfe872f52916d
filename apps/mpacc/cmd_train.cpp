// SPDX-License-Identifier: MIT
// mpacc train / mpacc eval: networks on real data (docs/semantics.md §8).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/analysis/plot.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/nn/cnn_passes.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/nn/vit_passes.hpp"
#include "mpacc/train/cnn.hpp"
#include "mpacc/train/train.hpp"
#include "mpacc/train/vit.hpp"
#include "mpacc/sim/layer.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::app {

namespace {

struct train_cli {
  std::string dataset = "mnist";
  std::string arch = "784-784-128-10";
  std::string act = "relu";
  std::size_t epochs = 0, batch = 0, limit = 0;  // 0: the architecture's default (10 and 64; vit 8 and 128)
  double lr = 0, momentum = 0.9;                 // lr 0: 0.05 for mnist (the paper's), 0.01 for fashion-mnist
  std::uint64_t seed = 1234;
  std::string storage = "e4m3-ieee";
  std::string out;
  std::string data;
  int threads = 0;
  std::vector<std::size_t> lr_steps;  // lenet5 only
  double lr_gamma = 0.1;
  // --arch vit (docs/attention.md)
  std::size_t blocks = 2, heads = 4, dim = 64, mlp = 0;
  double weight_decay = 0.05;
  std::size_t warmup = 200;
};

sim::activation_fn parse_act(const std::string& s) {
  return {option_value("--act", [&] { return sim::parse_activation(s); }), 0.01};
}

// The options every architecture shares (seed, threads, storage format) into
// opt, after checking --lr.
void common_options(const train_cli& o, train::train_options& opt) {
  if (!std::isfinite(o.lr) || o.lr < 0) throw usage_error("--lr: must be a positive number (or 0 for the default)");
  opt.seed = o.seed;
  opt.threads = o.threads;
  if (o.storage == "none") {
    opt.storage.reset();
  } else {
    opt.storage = option_value("--storage", [&] { return sim::parse_format(o.storage); });
  }
}

// The training and test sets, once --out is known to be writable (fail now,
// not after the training).
std::pair<io::dataset, io::dataset> load_sets(const train_cli& o) {
  if (o.out.empty()) throw usage_error("--out: a model file name is required");
  const auto parent = std::filesystem::path(o.out).parent_path();
  analysis::ensure_writable_dir(parent.empty() ? std::filesystem::path(".") : parent);
  const auto dir = o.data.empty() ? io::default_data_dir() : std::filesystem::path(o.data);
  return {io::load_dataset(dir, o.dataset, true, o.limit), io::load_dataset(dir, o.dataset, false)};
}

void print_epoch(const train::epoch_report& r) {
  std::fprintf(stderr, "epoch %2zu  loss %.4f  train accuracy %.2f%%  %.1f s\n", r.epoch, r.loss,
               100 * r.train_accuracy, r.seconds);
}

double total_seconds(const std::vector<train::epoch_report>& log) {
  double total = 0;
  for (const auto& r : log) total += r.seconds;
  return total;
}

// The closing lines of every training.
int report_trained(const train_cli& o, double acc32, double acc64, double total, std::size_t epochs) {
  std::printf("test accuracy (binary32): %.2f%%\n", 100 * acc32);
  std::printf("test accuracy (binary64): %.2f%%\n", 100 * acc64);
  std::printf("training time: %.1f s (%.1f s per epoch)\n", total, total / static_cast<double>(epochs));
  std::printf("model written to %s\n", o.out.c_str());
  return 0;
}

// --arch vit: AdamW (train::train_vit), a version-3 model file
int run_train_vit(const train_cli& o) {
  if (!o.lr_steps.empty()) throw usage_error("--lr-steps: only for --arch lenet5 (vit: warmup and cosine decay)");
  train::vit_train_options opt;
  if (o.epochs) opt.epochs = o.epochs;
  if (o.batch) opt.batch = o.batch;
  common_options(o, opt);
  if (o.lr > 0) opt.lr = o.lr;
  if (!std::isfinite(o.weight_decay) || o.weight_decay < 0) throw usage_error("--weight-decay: must be >= 0");
  opt.weight_decay = o.weight_decay;
  opt.warmup_steps = o.warmup;
  if (o.blocks == 0 || o.blocks > 64) throw usage_error("--blocks: must be in [1, 64]");
  if (o.dim == 0 || o.dim > 4096) throw usage_error("--dim: must be in [1, 4096]");
  if (o.heads == 0 || o.dim % o.heads != 0)
    throw usage_error("--heads: must divide --dim (" + std::to_string(o.dim) + ")");
  if (o.mlp > 65536) throw usage_error("--mlp: must be at most 65536");
  nn::vit net = nn::make_vit(o.blocks, o.dim, o.heads, o.mlp);
  const auto [train_set, test_set] = load_sets(o);
  if (train_set.cols != net.inputs()) throw usage_error("--arch vit: takes 28x28 images");
  std::fprintf(stderr,
               "training %s on %s (%zu images), %zu epochs, batch %zu, AdamW lr %g, weight decay %g, warmup %zu "
               "steps, seed %llu, storage %s\n",
               net.arch().c_str(), o.dataset.c_str(), train_set.rows, opt.epochs, opt.batch, opt.lr, opt.weight_decay,
               opt.warmup_steps, static_cast<unsigned long long>(o.seed), o.storage.c_str());
  opt.on_epoch = print_epoch;
  std::vector<train::epoch_report> log;
  train::train_vit(net, train_set, opt, &log);
  const double acc32 = train::evaluate_vit_native(net, test_set, true, o.threads);
  const double acc64 = train::evaluate_vit_native(net, test_set, false, o.threads);
  const double total = total_seconds(log);
  const nlohmann::json meta = {{"dataset", o.dataset},
                               {"arch", net.arch()},
                               {"epochs", opt.epochs},
                               {"batch", opt.batch},
                               {"optimizer", "adamw"},
                               {"lr", opt.lr},
                               {"weight_decay", opt.weight_decay},
                               {"warmup_steps", opt.warmup_steps},
                               {"seed", o.seed},
                               {"storage", o.storage},
                               {"train_images", train_set.rows},
                               {"test_accuracy_binary32", acc32},
                               {"test_accuracy_binary64", acc64},
                               {"train_seconds", total}};
  io::save_model(net, o.out, meta.dump());
  return report_trained(o, acc32, acc64, total, opt.epochs);
}

int run_train(const train_cli& o_in) {
  if (o_in.arch == "vit") return run_train_vit(o_in);
  train_cli o = o_in;
  if (o.epochs == 0) o.epochs = 10;
  if (o.batch == 0) o.batch = 64;
  const bool lenet = o.arch == "lenet5";
  std::vector<std::size_t> sizes;
  if (!lenet) sizes = option_value("--arch", [&] { return nn::parse_arch(o.arch); });
  if (!lenet && !o.lr_steps.empty()) throw usage_error("--lr-steps: only for --arch lenet5");
  const auto hidden = parse_act(o.act);
  train::cnn_train_options opt;
  opt.lr_steps = o.lr_steps;
  if (!std::isfinite(o.lr_gamma) || o.lr_gamma <= 0) throw usage_error("--lr-gamma: must be a positive number");
  opt.lr_gamma = o.lr_gamma;
  opt.epochs = o.epochs;
  opt.batch = o.batch;
  // The paper's lr 0.05 reaches 85.8% on Fashion-MNIST with e4m3-ieee weights; 0.01
  // reaches 88.7% (docs/networks.md), so that is the Fashion-MNIST default
  common_options(o, opt);
  if (!std::isfinite(o.momentum) || o.momentum < 0 || o.momentum >= 1)
    throw usage_error("--momentum: must be in [0, 1)");
  // LeNet-5: 0.01 (docs/cnn.md: 0.05 reaches 98.42 % on MNIST, 0.01 98.82 %)
  opt.lr = o.lr > 0 ? o.lr : (o.dataset == "fashion-mnist" || lenet ? 0.01 : 0.05);
  opt.momentum = o.momentum;
  const auto [train_set, test_set] = load_sets(o);
  std::fprintf(stderr,
               "training %s %s on %s (%zu images), %zu epochs, batch %zu, lr %g, momentum %g, seed %llu, storage %s\n",
               o.arch.c_str(), o.act.c_str(), o.dataset.c_str(), train_set.rows, o.epochs, o.batch, opt.lr, o.momentum,
               static_cast<unsigned long long>(o.seed), o.storage.c_str());
  opt.on_epoch = print_epoch;
  std::vector<train::epoch_report> log;
  nn::mlp net;
  nn::cnn cnet;
  double acc32 = 0, acc64 = 0;
  if (lenet) {
    if (train_set.cols != 28 * 28) throw usage_error("--arch lenet5: takes 28x28 images");
    cnet = nn::make_lenet5(hidden);
    train::train_cnn(cnet, train_set, opt, &log);
    acc32 = train::evaluate_cnn_native(cnet, test_set, true, o.threads);
    acc64 = train::evaluate_cnn_native(cnet, test_set, false, o.threads);
  } else {
    net = train::fit(sizes, hidden, train_set, opt, &log);
    acc32 = train::evaluate_native(net, test_set, true, o.threads);
    acc64 = train::evaluate_native(net, test_set, false, o.threads);
  }
  const double total = total_seconds(log);
  nlohmann::json meta = {{"dataset", o.dataset},
                         {"arch", lenet ? cnet.arch() : o.arch},
                         {"act", o.act},
                         {"epochs", o.epochs},
                         {"batch", o.batch},
                         {"lr", opt.lr},
                         {"momentum", o.momentum},
                         {"seed", o.seed},
                         {"storage", o.storage},
                         {"train_images", train_set.rows},
                         {"test_accuracy_binary32", acc32},
                         {"test_accuracy_binary64", acc64},
                         {"train_seconds", total}};
  if (lenet) {
    meta["lr_steps"] = o.lr_steps;
    meta["lr_gamma"] = o.lr_gamma;
    io::save_model(cnet, o.out, meta.dump());
  } else {
    io::save_model(net, o.out, meta.dump());
  }
  return report_trained(o, acc32, acc64, total, o.epochs);
}

struct eval_cli {
  std::string model, dataset = "mnist", act = "relu", data;
  std::string acc, order = "blocked:8", product = "exact", rounding = "nearest-even", act_format = "binary32";
  std::string input_format = "binary32";
  std::string storage = "none";
  std::string precision, precision_file, npz_arch;
  std::size_t limit = 0;
  int threads = 0;
  std::vector<CLI::Option*> precision_options;  // the single-choice options --precision replaces
};

// The precision of the simulated pass: --precision (compact) or --precision-file
// (JSON), or the single options.
std::optional<nn::precision_config> eval_precision(const eval_cli& o) {
  if (auto p =
          precision_from_options(o.precision, o.precision_file, o.precision_options,
                                 "--storage, --acc, --order, --product, --rounding, --act-format and --input-format"))
    return p;
  nn::precision_config p;
  if (o.storage != "none")
    p.weights = p.biases = option_value("--storage", [&] { return sim::parse_format(o.storage); });
  else
    p.weights = p.biases = std::nullopt;
  if (o.acc.empty()) return std::nullopt;
  p.acc = {option_value("--acc", [&] { return sim::parse_format(o.acc); })};
  p.order = option_value("--order", [&] { return sim::parse_order(o.order); });
  p.rounding = option_value("--rounding", [&] { return sim::parse_rounding(o.rounding); });
  if (o.product != "exact") p.product = option_value("--product", [&] { return sim::parse_format(o.product); });
  p.act = option_value("--act-format", [&] { return sim::parse_format(o.act_format); });
  p.inputs = option_value("--input-format", [&] { return sim::parse_format(o.input_format); });
  return p;
}

double native_accuracy(const nn::mlp& net, const io::dataset& d, bool single, int threads) {
  return train::evaluate_native(net, d, single, threads);
}
double native_accuracy(const nn::cnn& net, const io::dataset& d, bool single, int threads) {
  return train::evaluate_cnn_native(net, d, single, threads);
}

// The accuracies of an MLP or a CNN (nn::simulate and nn::stored_network have both overloads).
template <class Net>
int eval_network(Net net, const eval_cli& o) {
  const auto precision = eval_precision(o);
  if (precision) {
    try {
      precision->check(net.layers.size());
    } catch (const std::invalid_argument& e) {
      throw usage_error(e.what());
    }
    net = nn::stored_network(net, *precision);
  } else if (o.storage != "none") {
    nn::precision_config storage;
    storage.weights = storage.biases = option_value("--storage", [&] { return sim::parse_format(o.storage); });
    net = nn::stored_network(net, storage);  // nearest-even, as train::round_weights
  }
  const auto dir = o.data.empty() ? io::default_data_dir() : std::filesystem::path(o.data);
  const auto test_set = io::load_dataset(dir, o.dataset, false, o.limit);
  std::printf("model %s (%s), %s test set: %zu images\n", o.model.c_str(), net.arch().c_str(), o.dataset.c_str(),
              test_set.rows);
  std::printf("accuracy binary32: %.2f%%\n", 100 * native_accuracy(net, test_set, true, o.threads));
  std::printf("accuracy binary64: %.2f%%\n", 100 * native_accuracy(net, test_set, false, o.threads));
  if (!precision) return 0;
  const auto pass = nn::simulate(net, {test_set.x.data(), test_set.rows, test_set.cols}, *precision, o.threads);
  std::size_t correct = 0, overflowed = 0, outputs = 0;
  for (const auto& layer : pass)
    for (unsigned f : layer.flags) {
      overflowed += (f & sim::flag::overflow) != 0;
      ++outputs;
    }
  const std::size_t C = net.outputs();
  for (std::size_t s = 0; s < test_set.rows; ++s)
    correct += nn::argmax({pass.back().y.data() + s * C, C}) == test_set.y[s];
  std::printf("precision: %s\n", precision->to_string().c_str());
  std::printf("accuracy simulated: %.2f%%  (%zu of %zu outputs overflowed)\n",
              100.0 * static_cast<double>(correct) / static_cast<double>(test_set.rows), overflowed, outputs);
  return 0;
}

// The accuracies of a vision transformer: native binary32 and binary64 on
// the stored network, and the simulated pass (nn/vit_passes.hpp) in pieces.
int eval_vit(nn::vit net, const eval_cli& o) {
  const auto precision = eval_precision(o);
  if (precision) {
    try {
      precision->check(net.product_layers());
    } catch (const std::invalid_argument& e) {
      throw usage_error(std::string(e.what()) + " (a vit has " + std::to_string(net.product_layers()) +
                        " inner-product layers: docs/attention.md)");
    }
    net = nn::stored_network(net, *precision);
  } else if (o.storage != "none") {
    nn::precision_config storage;
    storage.weights = storage.biases = option_value("--storage", [&] { return sim::parse_format(o.storage); });
    storage.act = sim::formats::binary64;  // the elementwise parameters unchanged
    net = nn::stored_network(net, storage);
  }
  const auto dir = o.data.empty() ? io::default_data_dir() : std::filesystem::path(o.data);
  const auto test_set = io::load_dataset(dir, o.dataset, false, o.limit);
  std::printf("model %s (%s), %s test set: %zu images\n", o.model.c_str(), net.arch().c_str(), o.dataset.c_str(),
              test_set.rows);
  std::printf("accuracy binary32: %.2f%%\n", 100 * train::evaluate_vit_native(net, test_set, true, o.threads));
  std::printf("accuracy binary64: %.2f%%\n", 100 * train::evaluate_vit_native(net, test_set, false, o.threads));
  if (!precision) return 0;
  std::size_t correct = 0, overflowed = 0, outputs = 0;
  constexpr std::size_t kChunk = 256;  // the same bits as one pass (stochastic words from first_sample)
  for (std::size_t start = 0; start < test_set.rows; start += kChunk) {
    const std::size_t b = std::min(kChunk, test_set.rows - start);
    const auto pass = nn::simulate(net, {test_set.row(start), b, test_set.cols}, *precision, o.threads, start);
    for (const auto& layer : pass.layers)
      for (unsigned f : layer.flags) {
        overflowed += (f & sim::flag::overflow) != 0;
        ++outputs;
      }
    for (std::size_t s = 0; s < b; ++s)
      correct += nn::argmax({pass.logits().data() + s * net.classes, net.classes}) == test_set.y[start + s];
  }
  std::printf("precision: %s\n", precision->to_string().c_str());
  std::printf("accuracy simulated: %.2f%%  (%zu of %zu inner products overflowed)\n",
              100.0 * static_cast<double>(correct) / static_cast<double>(test_set.rows), overflowed, outputs);
  return 0;
}

int run_eval(const eval_cli& o) {
  if (o.model.empty()) throw usage_error("--model: a model file is required");
  if (io::is_vit_model(o.model)) return eval_vit(io::load_vit(o.model), o);
  if (auto v = npz_vit(o.model, o.npz_arch)) return eval_vit(*v, o);
  if (!o.npz_arch.empty()) return eval_network(npz_cnn(o.model, o.npz_arch, parse_act(o.act)), o);
  if (io::is_cnn_model(o.model)) return eval_network(io::load_cnn(o.model), o);
  return eval_network(io::load_any(o.model, parse_act(o.act)), o);
}

}  // namespace

command add_train_command(CLI::App& app) {
  auto o = std::make_shared<train_cli>();
  auto* sub = app.add_subcommand(
      "train",
      "Train an MLP (the paper's defaults), LeNet-5 or a vision transformer on MNIST or Fashion-MNIST and save it");
  sub->add_option("--dataset", o->dataset, "mnist | fashion-mnist")->capture_default_str();
  sub->add_option("--arch", o->arch, "layer sizes of an MLP, lenet5 (docs/cnn.md) or vit (docs/attention.md)")
      ->capture_default_str();
  sub->add_option("--act", o->act, "hidden activation: relu | tanh | sigmoid | gelu | silu | leaky-relu | identity")
      ->capture_default_str();
  sub->add_option("--epochs", o->epochs, "epochs (default 10; vit 8)");
  sub->add_option("--batch", o->batch, "minibatch size (default 64; vit 128)");
  sub->add_option("--lr", o->lr,
                  "SGD learning rate (default 0.05 for mnist as in the paper, 0.01 for fashion-mnist and for lenet5); "
                  "vit: AdamW's peak learning rate (default 0.002)");
  sub->add_option("--lr-steps", o->lr_steps,
                  "lenet5: epochs after which the learning rate is multiplied by --lr-gamma (e.g. 10)")
      ->delimiter(',');
  sub->add_option("--lr-gamma", o->lr_gamma, "lenet5: factor of the learning-rate steps")->capture_default_str();
  sub->add_option("--momentum", o->momentum, "SGD momentum")->capture_default_str();
  sub->add_option("--seed", o->seed, "seed (initialization and shuffling)")->capture_default_str();
  sub->add_option("--storage", o->storage,
                  "format weights and biases are rounded to in the forward pass (straight-through), or none")
      ->capture_default_str();
  sub->add_option("--limit", o->limit, "use only the first N training images (0: all)")->capture_default_str();
  sub->add_option("--data", o->data, "data folder (default: $MPACC_DATA or ./data)");
  sub->add_option("--threads", o->threads, "threads (0: all cores; at most 256)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  sub->add_option("--blocks", o->blocks, "vit: transformer blocks")->capture_default_str();
  sub->add_option("--heads", o->heads, "vit: attention heads (must divide --dim)")->capture_default_str();
  sub->add_option("--dim", o->dim, "vit: token width d")->capture_default_str();
  sub->add_option("--mlp", o->mlp, "vit: MLP width (0: 4 d)")->capture_default_str();
  sub->add_option("--weight-decay", o->weight_decay, "vit: AdamW's decoupled weight decay (weight matrices only)")
      ->capture_default_str();
  sub->add_option("--warmup", o->warmup, "vit: linear warmup steps before the cosine decay")->capture_default_str();
  sub->add_option("--out", o->out, "model file to write")->required();
  return [o] { return run_train(*o); };
}

command add_eval_command(CLI::App& app) {
  auto o = std::make_shared<eval_cli>();
  auto* sub = app.add_subcommand(
      "eval", "Test accuracy of a model in binary32, binary64 and, with --acc, a simulated accumulation");
  sub->add_option("--model", o->model, "model file (.mpnn from mpacc train, MLP, CNN or vit, or .npz with W1,b1,...)")
      ->required();
  sub->add_option("--dataset", o->dataset, "mnist | fashion-mnist")->capture_default_str();
  sub->add_option("--act", o->act, "hidden activation of an .npz model")->capture_default_str();
  sub->add_option("--npz-arch", o->npz_arch,
                  "lenet5: the .npz holds a LeNet-5's W1,b1,...,W5,b5 in PyTorch's layouts (docs/cnn.md);\n"
                  "vit:HEADS[:EPS]: a vision transformer as timm's state_dict names it (docs/attention.md)");
  o->precision_options = {
      sub->add_option("--storage", o->storage, "round weights and biases to this format first, or none")
          ->capture_default_str(),
      sub->add_option("--acc", o->acc, "simulated accumulator format (e.g. e4m3-ieee, binary16)"),
      sub->add_option("--order", o->order, "recursive | pairwise | blocked:B")->capture_default_str(),
      sub->add_option("--product", o->product, "exact or a product format")->capture_default_str(),
      sub->add_option("--rounding", o->rounding, "accumulator rounding mode")->capture_default_str(),
      sub->add_option("--act-format", o->act_format, "format activations are rounded to")->capture_default_str(),
      sub->add_option("--input-format", o->input_format, "format the input pixels are stored in")
          ->capture_default_str()};
  sub->add_option(
      "--precision", o->precision,
      "every precision choice in one line, e.g. 'acc=e4m3-ieee;order=blocked:8;saturate=on' (keys: weights, "
      "biases, inputs, product, acc, rounding, order, saturate, via, seed, act, act_rounding, act_saturate; "
      "docs/semantics.md); replaces the single options");
  sub->add_option("--precision-file", o->precision_file,
                  "the same as a JSON file (with per-layer accumulators and "
                  "per-component maps)");
  sub->add_option("--limit", o->limit, "first N test images (0: all)")->capture_default_str();
  sub->add_option("--data", o->data, "data folder (default: $MPACC_DATA or ./data)");
  sub->add_option("--threads", o->threads, "threads (0: all cores; at most 256)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  return [o] { return run_eval(*o); };
}

}  // namespace mpacc::app
