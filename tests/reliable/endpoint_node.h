// EndpointNode: a reliable::Endpoint as a node of the tests/sim simulator,
// plus the bookkeeping scenario tests need (events by connection, received
// messages, a hook to react to events in virtual time).
//
// Owns its Endpoint. Not thread-safe (nothing in the simulator is).
#ifndef UDPMSG_TESTS_RELIABLE_ENDPOINT_NODE_H_
#define UDPMSG_TESTS_RELIABLE_ENDPOINT_NODE_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "reliable/endpoint.h"
#include "tests/sim/simulator.h"
#include "udp/socket_address.h"

namespace udpmsg::testing {

class EndpointNode final : public sim::Node {
 public:
  EndpointNode(absl::Time now, const udp::SocketAddress& address,
               const reliable::EndpointOptions& options)
      : address_(address), endpoint_(now, options) {}

  void OnDatagram(absl::Time now, const udp::SocketAddress& from, const udp::SocketAddress&,
                  absl::string_view bytes) override {
    if (received_log_ != nullptr) received_log_->push_back(std::string(bytes));
    if (arrivals_ != nullptr) arrivals_->push_back(now);
    endpoint_.OnDatagram(now, from, bytes);
    Collect();
  }
  void OnDatagrams(absl::Time now, const std::vector<sim::Datagram>& batch) override {
    std::vector<reliable::ReceivedDatagram> views;
    views.reserve(batch.size());
    for (const sim::Datagram& d : batch) {
      if (received_log_ != nullptr) received_log_->push_back(d.bytes);
      if (arrivals_ != nullptr) arrivals_->push_back(now);
      views.push_back(reliable::ReceivedDatagram{&d.from, d.bytes});
    }
    endpoint_.OnDatagrams(now, views);
    Collect();
  }
  void OnTimeout(absl::Time now) override {
    ++wakeups_;
    endpoint_.OnTimeout(now);
    Collect();
  }
  absl::Time NextTimeout() const override { return endpoint_.NextTimeout(); }
  std::vector<sim::Datagram> TakeOutgoing() override {
    Collect();
    std::vector<sim::Datagram> out;
    for (reliable::Outgoing& o : endpoint_.TakeOutgoing()) {
      if (sent_log_ != nullptr) sent_log_->push_back(o.bytes);
      out.push_back(sim::Datagram{address_, o.peer, std::move(o.bytes)});
    }
    return out;
  }

  // Drains the endpoint's events into events() and calls the hook on each.
  void Collect() {
    for (reliable::Event& e : endpoint_.TakeEvents()) {
      events_.push_back(std::move(e));
      if (on_event_) on_event_(events_.back());
    }
  }

  reliable::Endpoint& endpoint() { return endpoint_; }
  // How many times the simulator woke this node for its timers.
  uint64_t wakeups() const { return wakeups_; }
  const udp::SocketAddress& address() const { return address_; }
  std::vector<reliable::Event>& events() { return events_; }
  // Records every datagram this node sends (borrowed; null to stop).
  void set_sent_log(std::vector<std::string>* log) { sent_log_ = log; }
  // Records every datagram this node receives (borrowed; null to stop).
  void set_received_log(std::vector<std::string>* log) { received_log_ = log; }
  // Records when each of those datagrams arrived (borrowed; null to stop).
  void set_arrival_log(std::vector<absl::Time>* log) { arrivals_ = log; }
  void set_on_event(std::function<void(const reliable::Event&)> hook) {
    on_event_ = std::move(hook);
  }

  size_t Count(reliable::Event::Type type) const {
    size_t n = 0;
    for (const reliable::Event& e : events_) n += e.type == type;
    return n;
  }
  const reliable::Event* Find(reliable::Event::Type type) const {
    for (const reliable::Event& e : events_) {
      if (e.type == type) return &e;
    }
    return nullptr;
  }

 private:
  udp::SocketAddress address_;
  reliable::Endpoint endpoint_;
  std::vector<reliable::Event> events_;
  std::function<void(const reliable::Event&)> on_event_;
  std::vector<std::string>* sent_log_ = nullptr;
  std::vector<std::string>* received_log_ = nullptr;
  std::vector<absl::Time>* arrivals_ = nullptr;
  uint64_t wakeups_ = 0;
};

}  // namespace udpmsg::testing

#endif  // UDPMSG_TESTS_RELIABLE_ENDPOINT_NODE_H_
