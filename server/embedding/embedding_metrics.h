// The embedding path's metrics: per-stage latency of embedding calls
// (preprocess, queue, inference), and per forward pass the batch size,
// batches and items embedded, by modality.
#pragma once

#include "server/embedding/embedding_batcher.h"
#include "server/metrics/metrics_registry.h"

namespace refinery {

struct CallTiming;

class EmbeddingMetrics {
 public:
  explicit EmbeddingMetrics(MetricsRegistry& registry);

  void record_timing(const CallTiming& timing);
  void record_batch(const BatchStats& stats);

 private:
  HistogramFamily& stage_seconds_;
  HistogramFamily& batch_size_;
  CounterFamily& batches_;
  CounterFamily& items_;
  GaugeFamily& wait_budget_;
};

}  // namespace refinery
