#pragma once
#include "rivet/scorer.h"
#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#if __cplusplus >= 201703L
#include <string_view>
#endif
#if __cplusplus >= 202002L
#include <ranges>
#endif

#ifdef __clang__
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdollar-in-identifier-extension"
#endif // __clang__

namespace rust {
inline namespace cxxbridge1 {
// #include "rust/cxx.h"

#ifndef CXXBRIDGE1_PANIC
#define CXXBRIDGE1_PANIC
template <typename Exception>
void panic [[noreturn]] (const char *msg);
#endif // CXXBRIDGE1_PANIC

struct unsafe_bitcopy_t;

namespace {
template <typename T>
class impl;
} // namespace

template <typename T>
::std::size_t size_of();
template <typename T>
::std::size_t align_of();

#ifndef CXXBRIDGE1_RUST_STRING
#define CXXBRIDGE1_RUST_STRING
class String final {
public:
  String() noexcept;
  String(const String &) noexcept;
  String(String &&) noexcept;
  ~String() noexcept;

  String(const std::string &);
  String(const char *);
  String(const char *, std::size_t);
  String(const char16_t *);
  String(const char16_t *, std::size_t);
#ifdef __cpp_char8_t
  String(const char8_t *s);
  String(const char8_t *s, std::size_t len);
#endif

  static String lossy(const std::string &) noexcept;
  static String lossy(const char *) noexcept;
  static String lossy(const char *, std::size_t) noexcept;
  static String lossy(const char16_t *) noexcept;
  static String lossy(const char16_t *, std::size_t) noexcept;

  String &operator=(const String &) & noexcept;
  String &operator=(String &&) & noexcept;

  explicit operator std::string() const;

  const char *data() const noexcept;
  char *data() noexcept;

  std::size_t size() const noexcept;
  std::size_t length() const noexcept;
  bool empty() const noexcept;

  const char *c_str() noexcept;

  std::size_t capacity() const noexcept;
  void reserve(size_t new_cap) noexcept;

  using iterator = char *;
  iterator begin() noexcept;
  iterator end() noexcept;

  using const_iterator = const char *;
  const_iterator begin() const noexcept;
  const_iterator end() const noexcept;
  const_iterator cbegin() const noexcept;
  const_iterator cend() const noexcept;

  bool operator==(const String &) const noexcept;
  bool operator!=(const String &) const noexcept;
  bool operator<(const String &) const noexcept;
  bool operator<=(const String &) const noexcept;
  bool operator>(const String &) const noexcept;
  bool operator>=(const String &) const noexcept;

  void swap(String &) noexcept;

  String(unsafe_bitcopy_t, const String &) noexcept;

private:
  struct lossy_t;
  String(lossy_t, const char *, std::size_t) noexcept;
  String(lossy_t, const char16_t *, std::size_t) noexcept;
  friend void swap(String &lhs, String &rhs) noexcept { lhs.swap(rhs); }

  std::array<std::uintptr_t, 3> repr;
};
#endif // CXXBRIDGE1_RUST_STRING

#ifndef CXXBRIDGE1_RUST_STR
#define CXXBRIDGE1_RUST_STR
class Str final {
public:
  Str() noexcept;
  Str(const String &) noexcept;
  Str(const std::string &);
  Str(const char *);
  Str(const char *, std::size_t);

  Str &operator=(const Str &) & noexcept = default;

  explicit operator std::string() const;
#if __cplusplus >= 201703L
  explicit operator std::string_view() const;
#endif

  const char *data() const noexcept;
  std::size_t size() const noexcept;
  std::size_t length() const noexcept;
  bool empty() const noexcept;

  Str(const Str &) noexcept = default;
  ~Str() noexcept = default;

  using iterator = const char *;
  using const_iterator = const char *;
  const_iterator begin() const noexcept;
  const_iterator end() const noexcept;
  const_iterator cbegin() const noexcept;
  const_iterator cend() const noexcept;

  bool operator==(const Str &) const noexcept;
  bool operator!=(const Str &) const noexcept;
  bool operator<(const Str &) const noexcept;
  bool operator<=(const Str &) const noexcept;
  bool operator>(const Str &) const noexcept;
  bool operator>=(const Str &) const noexcept;

  void swap(Str &) noexcept;

private:
  class uninit;
  Str(uninit) noexcept;
  friend impl<Str>;

  std::array<std::uintptr_t, 2> repr;
};
#endif // CXXBRIDGE1_RUST_STR

#ifndef CXXBRIDGE1_RUST_SLICE
#define CXXBRIDGE1_RUST_SLICE
namespace detail {
template <bool>
struct copy_assignable_if {};

template <>
struct copy_assignable_if<false> {
  copy_assignable_if() noexcept = default;
  copy_assignable_if(const copy_assignable_if &) noexcept = default;
  copy_assignable_if &operator=(const copy_assignable_if &) & noexcept = delete;
  copy_assignable_if &operator=(copy_assignable_if &&) & noexcept = default;
};
} // namespace detail

template <typename T>
class Slice final
    : private detail::copy_assignable_if<std::is_const<T>::value> {
public:
  using value_type = T;

  Slice() noexcept;
  Slice(T *, std::size_t count) noexcept;

  template <typename C>
  explicit Slice(C &c) : Slice(c.data(), c.size()) {}

  Slice &operator=(const Slice<T> &) & noexcept = default;
  Slice &operator=(Slice<T> &&) & noexcept = default;

  T *data() const noexcept;
  std::size_t size() const noexcept;
  std::size_t length() const noexcept;
  bool empty() const noexcept;

  T &operator[](std::size_t n) const noexcept;
  T &at(std::size_t n) const;
  T &front() const noexcept;
  T &back() const noexcept;

  Slice(const Slice<T> &) noexcept = default;
  ~Slice() noexcept = default;

  class iterator;
  iterator begin() const noexcept;
  iterator end() const noexcept;

  void swap(Slice &) noexcept;

private:
  class uninit;
  Slice(uninit) noexcept;
  friend impl<Slice>;
  friend void sliceInit(void *, const void *, std::size_t) noexcept;
  friend void *slicePtr(const void *) noexcept;
  friend std::size_t sliceLen(const void *) noexcept;

  std::array<std::uintptr_t, 2> repr;
};

#ifdef __cpp_deduction_guides
template <typename C>
explicit Slice(C &c)
    -> Slice<std::remove_reference_t<decltype(*std::declval<C>().data())>>;
#endif // __cpp_deduction_guides

template <typename T>
class Slice<T>::iterator final {
public:
#if __cplusplus >= 202002L
  using iterator_category = std::contiguous_iterator_tag;
#else
  using iterator_category = std::random_access_iterator_tag;
#endif
  using value_type = T;
  using difference_type = std::ptrdiff_t;
  using pointer = typename std::add_pointer<T>::type;
  using reference = typename std::add_lvalue_reference<T>::type;

  reference operator*() const noexcept;
  pointer operator->() const noexcept;
  reference operator[](difference_type) const noexcept;

  iterator &operator++() noexcept;
  iterator operator++(int) noexcept;
  iterator &operator--() noexcept;
  iterator operator--(int) noexcept;

  iterator &operator+=(difference_type) noexcept;
  iterator &operator-=(difference_type) noexcept;
  iterator operator+(difference_type) const noexcept;
  friend inline iterator operator+(difference_type lhs, iterator rhs) noexcept {
    return rhs + lhs;
  }
  iterator operator-(difference_type) const noexcept;
  difference_type operator-(const iterator &) const noexcept;

  bool operator==(const iterator &) const noexcept;
  bool operator!=(const iterator &) const noexcept;
  bool operator<(const iterator &) const noexcept;
  bool operator<=(const iterator &) const noexcept;
  bool operator>(const iterator &) const noexcept;
  bool operator>=(const iterator &) const noexcept;

private:
  friend class Slice;
  void *pos;
  std::size_t stride;
};

template <typename T>
Slice<T>::Slice() noexcept {
  sliceInit(this, reinterpret_cast<void *>(align_of<T>()), 0);
}

template <typename T>
Slice<T>::Slice(T *s, std::size_t count) noexcept {
  assert(s != nullptr || count == 0);
  sliceInit(this,
            s == nullptr && count == 0
                ? reinterpret_cast<void *>(align_of<T>())
                : const_cast<typename std::remove_const<T>::type *>(s),
            count);
}

template <typename T>
T *Slice<T>::data() const noexcept {
  return reinterpret_cast<T *>(slicePtr(this));
}

template <typename T>
std::size_t Slice<T>::size() const noexcept {
  return sliceLen(this);
}

template <typename T>
std::size_t Slice<T>::length() const noexcept {
  return this->size();
}

template <typename T>
bool Slice<T>::empty() const noexcept {
  return this->size() == 0;
}

template <typename T>
T &Slice<T>::operator[](std::size_t n) const noexcept {
  assert(n < this->size());
  auto ptr = static_cast<char *>(slicePtr(this)) + size_of<T>() * n;
  return *reinterpret_cast<T *>(ptr);
}

template <typename T>
T &Slice<T>::at(std::size_t n) const {
  if (n >= this->size()) {
    panic<std::out_of_range>("rust::Slice index out of range");
  }
  return (*this)[n];
}

template <typename T>
T &Slice<T>::front() const noexcept {
  assert(!this->empty());
  return (*this)[0];
}

template <typename T>
T &Slice<T>::back() const noexcept {
  assert(!this->empty());
  return (*this)[this->size() - 1];
}

template <typename T>
typename Slice<T>::iterator::reference
Slice<T>::iterator::operator*() const noexcept {
  return *static_cast<T *>(this->pos);
}

template <typename T>
typename Slice<T>::iterator::pointer
Slice<T>::iterator::operator->() const noexcept {
  return static_cast<T *>(this->pos);
}

template <typename T>
typename Slice<T>::iterator::reference Slice<T>::iterator::operator[](
    typename Slice<T>::iterator::difference_type n) const noexcept {
  auto ptr = static_cast<char *>(this->pos) + this->stride * n;
  return *reinterpret_cast<T *>(ptr);
}

template <typename T>
typename Slice<T>::iterator &Slice<T>::iterator::operator++() noexcept {
  this->pos = static_cast<char *>(this->pos) + this->stride;
  return *this;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::iterator::operator++(int) noexcept {
  auto ret = iterator(*this);
  this->pos = static_cast<char *>(this->pos) + this->stride;
  return ret;
}

template <typename T>
typename Slice<T>::iterator &Slice<T>::iterator::operator--() noexcept {
  this->pos = static_cast<char *>(this->pos) - this->stride;
  return *this;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::iterator::operator--(int) noexcept {
  auto ret = iterator(*this);
  this->pos = static_cast<char *>(this->pos) - this->stride;
  return ret;
}

template <typename T>
typename Slice<T>::iterator &Slice<T>::iterator::operator+=(
    typename Slice<T>::iterator::difference_type n) noexcept {
  this->pos = static_cast<char *>(this->pos) + this->stride * n;
  return *this;
}

template <typename T>
typename Slice<T>::iterator &Slice<T>::iterator::operator-=(
    typename Slice<T>::iterator::difference_type n) noexcept {
  this->pos = static_cast<char *>(this->pos) - this->stride * n;
  return *this;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::iterator::operator+(
    typename Slice<T>::iterator::difference_type n) const noexcept {
  auto ret = iterator(*this);
  ret.pos = static_cast<char *>(this->pos) + this->stride * n;
  return ret;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::iterator::operator-(
    typename Slice<T>::iterator::difference_type n) const noexcept {
  auto ret = iterator(*this);
  ret.pos = static_cast<char *>(this->pos) - this->stride * n;
  return ret;
}

template <typename T>
typename Slice<T>::iterator::difference_type
Slice<T>::iterator::operator-(const iterator &other) const noexcept {
  auto diff = std::distance(static_cast<char *>(other.pos),
                            static_cast<char *>(this->pos));
  return diff / static_cast<typename Slice<T>::iterator::difference_type>(
                    this->stride);
}

template <typename T>
bool Slice<T>::iterator::operator==(const iterator &other) const noexcept {
  return this->pos == other.pos;
}

template <typename T>
bool Slice<T>::iterator::operator!=(const iterator &other) const noexcept {
  return this->pos != other.pos;
}

template <typename T>
bool Slice<T>::iterator::operator<(const iterator &other) const noexcept {
  return this->pos < other.pos;
}

template <typename T>
bool Slice<T>::iterator::operator<=(const iterator &other) const noexcept {
  return this->pos <= other.pos;
}

template <typename T>
bool Slice<T>::iterator::operator>(const iterator &other) const noexcept {
  return this->pos > other.pos;
}

template <typename T>
bool Slice<T>::iterator::operator>=(const iterator &other) const noexcept {
  return this->pos >= other.pos;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::begin() const noexcept {
  iterator it;
  it.pos = slicePtr(this);
  it.stride = size_of<T>();
  return it;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::end() const noexcept {
  iterator it = this->begin();
  it.pos = static_cast<char *>(it.pos) + it.stride * this->size();
  return it;
}

template <typename T>
void Slice<T>::swap(Slice &rhs) noexcept {
  std::swap(*this, rhs);
}
#endif // CXXBRIDGE1_RUST_SLICE

#ifndef CXXBRIDGE1_RUST_BOX
#define CXXBRIDGE1_RUST_BOX
template <typename T>
class Box final {
public:
  using element_type = T;
  using const_pointer =
      typename std::add_pointer<typename std::add_const<T>::type>::type;
  using pointer = typename std::add_pointer<T>::type;

  Box() = delete;
  Box(Box &&) noexcept;
  ~Box() noexcept;

  explicit Box(const T &);
  explicit Box(T &&);

  Box &operator=(Box &&) & noexcept;

  const T *operator->() const noexcept;
  const T &operator*() const noexcept;
  T *operator->() noexcept;
  T &operator*() noexcept;

  template <typename... Fields>
  static Box in_place(Fields &&...);

  void swap(Box &) noexcept;

  static Box from_raw(T *) noexcept;

  T *into_raw() noexcept;

  /* Deprecated */ using value_type = element_type;

private:
  class uninit;
  class allocation;
  Box(uninit) noexcept;
  void drop() noexcept;

  friend void swap(Box &lhs, Box &rhs) noexcept { lhs.swap(rhs); }

  T *ptr;
};

template <typename T>
class Box<T>::uninit {};

template <typename T>
class Box<T>::allocation {
  static T *alloc() noexcept;
  static void dealloc(T *) noexcept;

public:
  allocation() noexcept : ptr(alloc()) {}
  ~allocation() noexcept {
    if (this->ptr) {
      dealloc(this->ptr);
    }
  }
  T *ptr;
};

template <typename T>
Box<T>::Box(Box &&other) noexcept : ptr(other.ptr) {
  other.ptr = nullptr;
}

template <typename T>
Box<T>::Box(const T &val) {
  allocation alloc;
  ::new (alloc.ptr) T(val);
  this->ptr = alloc.ptr;
  alloc.ptr = nullptr;
}

template <typename T>
Box<T>::Box(T &&val) {
  allocation alloc;
  ::new (alloc.ptr) T(std::move(val));
  this->ptr = alloc.ptr;
  alloc.ptr = nullptr;
}

template <typename T>
Box<T>::~Box() noexcept {
  if (this->ptr) {
    this->drop();
  }
}

template <typename T>
Box<T> &Box<T>::operator=(Box &&other) & noexcept {
  if (this->ptr) {
    this->drop();
  }
  this->ptr = other.ptr;
  other.ptr = nullptr;
  return *this;
}

template <typename T>
const T *Box<T>::operator->() const noexcept {
  return this->ptr;
}

template <typename T>
const T &Box<T>::operator*() const noexcept {
  return *this->ptr;
}

template <typename T>
T *Box<T>::operator->() noexcept {
  return this->ptr;
}

template <typename T>
T &Box<T>::operator*() noexcept {
  return *this->ptr;
}

template <typename T>
template <typename... Fields>
Box<T> Box<T>::in_place(Fields &&...fields) {
  allocation alloc;
  auto ptr = alloc.ptr;
  ::new (ptr) T{std::forward<Fields>(fields)...};
  alloc.ptr = nullptr;
  return from_raw(ptr);
}

template <typename T>
void Box<T>::swap(Box &rhs) noexcept {
  using std::swap;
  swap(this->ptr, rhs.ptr);
}

template <typename T>
Box<T> Box<T>::from_raw(T *raw) noexcept {
  Box box = uninit{};
  box.ptr = raw;
  return box;
}

template <typename T>
T *Box<T>::into_raw() noexcept {
  T *raw = this->ptr;
  this->ptr = nullptr;
  return raw;
}

template <typename T>
Box<T>::Box(uninit) noexcept {}
#endif // CXXBRIDGE1_RUST_BOX

#ifndef CXXBRIDGE1_RUST_BITCOPY_T
#define CXXBRIDGE1_RUST_BITCOPY_T
struct unsafe_bitcopy_t final {
  explicit unsafe_bitcopy_t() = default;
};
#endif // CXXBRIDGE1_RUST_BITCOPY_T

#ifndef CXXBRIDGE1_RUST_VEC
#define CXXBRIDGE1_RUST_VEC
template <typename T>
class Vec final {
public:
  using value_type = T;

  Vec() noexcept;
  Vec(std::initializer_list<T>);
  Vec(const Vec &);
  Vec(Vec &&) noexcept;
  ~Vec() noexcept;

  Vec &operator=(Vec &&) & noexcept;
  Vec &operator=(const Vec &) &;

  std::size_t size() const noexcept;
  bool empty() const noexcept;
  const T *data() const noexcept;
  T *data() noexcept;
  std::size_t capacity() const noexcept;

  const T &operator[](std::size_t n) const noexcept;
  const T &at(std::size_t n) const;
  const T &front() const noexcept;
  const T &back() const noexcept;

  T &operator[](std::size_t n) noexcept;
  T &at(std::size_t n);
  T &front() noexcept;
  T &back() noexcept;

  void reserve(std::size_t new_cap);
  void push_back(const T &value);
  void push_back(T &&value);
  template <typename... Args>
  void emplace_back(Args &&...args);
  void truncate(std::size_t len);
  void clear();

  using iterator = typename Slice<T>::iterator;
  iterator begin() noexcept;
  iterator end() noexcept;

  using const_iterator = typename Slice<const T>::iterator;
  const_iterator begin() const noexcept;
  const_iterator end() const noexcept;
  const_iterator cbegin() const noexcept;
  const_iterator cend() const noexcept;

  void swap(Vec &) noexcept;

  Vec(unsafe_bitcopy_t, const Vec &) noexcept;

private:
  void reserve_total(std::size_t new_cap) noexcept;
  void set_len(std::size_t len) noexcept;
  void drop() noexcept;

  friend void swap(Vec &lhs, Vec &rhs) noexcept { lhs.swap(rhs); }

  std::array<std::uintptr_t, 3> repr;
};

template <typename T>
Vec<T>::Vec(std::initializer_list<T> init) : Vec{} {
  this->reserve_total(init.size());
  std::move(init.begin(), init.end(), std::back_inserter(*this));
}

template <typename T>
Vec<T>::Vec(const Vec &other) : Vec() {
  this->reserve_total(other.size());
  std::copy(other.begin(), other.end(), std::back_inserter(*this));
}

template <typename T>
Vec<T>::Vec(Vec &&other) noexcept : repr(other.repr) {
  new (&other) Vec();
}

template <typename T>
Vec<T>::~Vec() noexcept {
  this->drop();
}

template <typename T>
Vec<T> &Vec<T>::operator=(Vec &&other) & noexcept {
  this->drop();
  this->repr = other.repr;
  new (&other) Vec();
  return *this;
}

template <typename T>
Vec<T> &Vec<T>::operator=(const Vec &other) & {
  if (this != &other) {
    this->drop();
    new (this) Vec(other);
  }
  return *this;
}

template <typename T>
bool Vec<T>::empty() const noexcept {
  return this->size() == 0;
}

template <typename T>
const T &Vec<T>::operator[](std::size_t n) const noexcept {
  assert(n < this->size());
  auto data = reinterpret_cast<const char *>(this->data());
  return *reinterpret_cast<const T *>(data + n * size_of<T>());
}

template <typename T>
const T &Vec<T>::at(std::size_t n) const {
  if (n >= this->size()) {
    panic<std::out_of_range>("rust::Vec index out of range");
  }
  return (*this)[n];
}

template <typename T>
const T &Vec<T>::front() const noexcept {
  assert(!this->empty());
  return (*this)[0];
}

template <typename T>
const T &Vec<T>::back() const noexcept {
  assert(!this->empty());
  return (*this)[this->size() - 1];
}

template <typename T>
T &Vec<T>::operator[](std::size_t n) noexcept {
  assert(n < this->size());
  auto data = reinterpret_cast<char *>(this->data());
  return *reinterpret_cast<T *>(data + n * size_of<T>());
}

template <typename T>
T &Vec<T>::at(std::size_t n) {
  if (n >= this->size()) {
    panic<std::out_of_range>("rust::Vec index out of range");
  }
  return (*this)[n];
}

template <typename T>
T &Vec<T>::front() noexcept {
  assert(!this->empty());
  return (*this)[0];
}

template <typename T>
T &Vec<T>::back() noexcept {
  assert(!this->empty());
  return (*this)[this->size() - 1];
}

template <typename T>
void Vec<T>::reserve(std::size_t new_cap) {
  this->reserve_total(new_cap);
}

template <typename T>
void Vec<T>::push_back(const T &value) {
  this->emplace_back(value);
}

template <typename T>
void Vec<T>::push_back(T &&value) {
  this->emplace_back(std::move(value));
}

template <typename T>
template <typename... Args>
void Vec<T>::emplace_back(Args &&...args) {
  auto size = this->size();
  this->reserve_total(size + 1);
  ::new (reinterpret_cast<T *>(reinterpret_cast<char *>(this->data()) +
                               size * size_of<T>()))
      T(std::forward<Args>(args)...);
  this->set_len(size + 1);
}

template <typename T>
void Vec<T>::clear() {
  this->truncate(0);
}

template <typename T>
typename Vec<T>::iterator Vec<T>::begin() noexcept {
  return Slice<T>(this->data(), this->size()).begin();
}

template <typename T>
typename Vec<T>::iterator Vec<T>::end() noexcept {
  return Slice<T>(this->data(), this->size()).end();
}

template <typename T>
typename Vec<T>::const_iterator Vec<T>::begin() const noexcept {
  return this->cbegin();
}

template <typename T>
typename Vec<T>::const_iterator Vec<T>::end() const noexcept {
  return this->cend();
}

template <typename T>
typename Vec<T>::const_iterator Vec<T>::cbegin() const noexcept {
  return Slice<const T>(this->data(), this->size()).begin();
}

template <typename T>
typename Vec<T>::const_iterator Vec<T>::cend() const noexcept {
  return Slice<const T>(this->data(), this->size()).end();
}

template <typename T>
void Vec<T>::swap(Vec &rhs) noexcept {
  using std::swap;
  swap(this->repr, rhs.repr);
}

template <typename T>
Vec<T>::Vec(unsafe_bitcopy_t, const Vec &bits) noexcept : repr(bits.repr) {}
#endif // CXXBRIDGE1_RUST_VEC

#ifndef CXXBRIDGE1_RUST_OPAQUE
#define CXXBRIDGE1_RUST_OPAQUE
class Opaque {
public:
  Opaque() = delete;
  Opaque(const Opaque &) = delete;
  ~Opaque() = delete;
};
#endif // CXXBRIDGE1_RUST_OPAQUE

#ifndef CXXBRIDGE1_IS_COMPLETE
#define CXXBRIDGE1_IS_COMPLETE
namespace detail {
namespace {
template <typename T, typename = std::size_t>
struct is_complete : std::false_type {};
template <typename T>
struct is_complete<T, decltype(sizeof(T))> : std::true_type {};
} // namespace
} // namespace detail
#endif // CXXBRIDGE1_IS_COMPLETE

#ifndef CXXBRIDGE1_LAYOUT
#define CXXBRIDGE1_LAYOUT
class layout {
  template <typename T>
  friend std::size_t size_of();
  template <typename T>
  friend std::size_t align_of();
  template <typename T>
  static typename std::enable_if<std::is_base_of<Opaque, T>::value,
                                 std::size_t>::type
  do_size_of() {
    return T::layout::size();
  }
  template <typename T>
  static typename std::enable_if<!std::is_base_of<Opaque, T>::value,
                                 std::size_t>::type
  do_size_of() {
    return sizeof(T);
  }
  template <typename T>
  static
      typename std::enable_if<detail::is_complete<T>::value, std::size_t>::type
      size_of() {
    return do_size_of<T>();
  }
  template <typename T>
  static typename std::enable_if<std::is_base_of<Opaque, T>::value,
                                 std::size_t>::type
  do_align_of() {
    return T::layout::align();
  }
  template <typename T>
  static typename std::enable_if<!std::is_base_of<Opaque, T>::value,
                                 std::size_t>::type
  do_align_of() {
    return alignof(T);
  }
  template <typename T>
  static
      typename std::enable_if<detail::is_complete<T>::value, std::size_t>::type
      align_of() {
    return do_align_of<T>();
  }
};

template <typename T>
std::size_t size_of() {
  return layout::size_of<T>();
}

template <typename T>
std::size_t align_of() {
  return layout::align_of<T>();
}
#endif // CXXBRIDGE1_LAYOUT
} // namespace cxxbridge1
} // namespace rust

#if __cplusplus >= 201402L
#define CXX_DEFAULT_VALUE(value) = value
#else
#define CXX_DEFAULT_VALUE(value)
#endif

namespace rivet {
  enum class ErrorCode : ::std::uint32_t;
  struct TensorSpec;
  struct TensorRef;
  struct ShadowConfig;
  struct ShadowStats;
  struct BackendOption;
  struct LoadedModel;
  struct LoadConfig;
  struct ModelOutputs;
  using DType = ::rivet::DType;
  using Scorer = ::rivet::Scorer;
  using ScorerBackend = ::rivet::ScorerBackend;
  namespace bridge {
    using ScorerOutputs = ::rivet::bridge::ScorerOutputs;
  }
}

namespace rivet {
static_assert(::std::is_enum<DType>::value, "expected enum");
static_assert(sizeof(DType) == sizeof(::std::uint32_t), "incorrect size");
static_assert(static_cast<::std::uint32_t>(DType::Unknown) == 0, "disagrees with the value in #[cxx::bridge]");
static_assert(static_cast<::std::uint32_t>(DType::F16) == 1, "disagrees with the value in #[cxx::bridge]");
static_assert(static_cast<::std::uint32_t>(DType::BF16) == 2, "disagrees with the value in #[cxx::bridge]");
static_assert(static_cast<::std::uint32_t>(DType::F32) == 3, "disagrees with the value in #[cxx::bridge]");
static_assert(static_cast<::std::uint32_t>(DType::F64) == 4, "disagrees with the value in #[cxx::bridge]");
static_assert(static_cast<::std::uint32_t>(DType::I8) == 5, "disagrees with the value in #[cxx::bridge]");
static_assert(static_cast<::std::uint32_t>(DType::I16) == 6, "disagrees with the value in #[cxx::bridge]");
static_assert(static_cast<::std::uint32_t>(DType::I32) == 7, "disagrees with the value in #[cxx::bridge]");
static_assert(static_cast<::std::uint32_t>(DType::I64) == 8, "disagrees with the value in #[cxx::bridge]");
static_assert(static_cast<::std::uint32_t>(DType::U8) == 9, "disagrees with the value in #[cxx::bridge]");
static_assert(static_cast<::std::uint32_t>(DType::Bool) == 10, "disagrees with the value in #[cxx::bridge]");

#ifndef CXXBRIDGE1_ENUM_rivet$ErrorCode
#define CXXBRIDGE1_ENUM_rivet$ErrorCode
// A stable error code; the values are rivet.h's `RIVET_ERROR_*`.
enum class ErrorCode : ::std::uint32_t {
  // Not a Rivet error (`what()` carries no Rivet code).
  None = 0,
  // A bad argument to the API itself (mixed named and unnamed inputs, an index out of range).
  InvalidArgument = 1,
  // The inputs do not match the model's signature.
  InvalidInput = 2,
  // Tensor bytes do not match dtype and shape, or are misaligned.
  InvalidTensor = 3,
  // A model file could not be read, parsed or loaded.
  ModelLoad = 4,
  // A backend lacks a format, dtype, device or operator.
  Unsupported = 5,
  // A backend (or a C++ scorer) failed while running.
  Backend = 6,
  // A file other than the model is missing or malformed.
  Io = 7,
  // Rivet panicked; the panic was caught.
  Panic = 8,
  // A load option is malformed or unknown, or names an unknown backend.
  InvalidOption = 9,
};
#endif // CXXBRIDGE1_ENUM_rivet$ErrorCode

#ifndef CXXBRIDGE1_STRUCT_rivet$TensorSpec
#define CXXBRIDGE1_STRUCT_rivet$TensorSpec
// One input or output as a model declares it.
struct TensorSpec final {
  // Its name.
  ::rust::String name;
  // Its element type (`Unknown` where the model does not say).
  ::rivet::DType dtype;
  // One entry per dimension; -1 for a dimension of any size. Empty with dtype `Unknown`
  // where the model does not say.
  ::rust::Vec<::std::int64_t> shape;

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_rivet$TensorSpec

#ifndef CXXBRIDGE1_STRUCT_rivet$TensorRef
#define CXXBRIDGE1_STRUCT_rivet$TensorRef
// A tensor borrowed for one call: C++ buffers going into `LoadedModel::run`, and the
// inputs Rivet hands a `Scorer`. Nothing is copied; `data` must stay valid for the call.
struct TensorRef final {
  // The input's name, or empty to go by position (all named or all empty).
  ::rust::Str name;
  // The element type of `data`.
  ::rivet::DType dtype;
  // One entry per dimension, each >= 0.
  ::rust::Slice<::std::int64_t const> shape;
  // The elements, row-major: exactly product(shape) * size(dtype) bytes, aligned to the
  // element size.
  ::rust::Slice<::std::uint8_t const> data;

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_rivet$TensorRef

#ifndef CXXBRIDGE1_STRUCT_rivet$ShadowConfig
#define CXXBRIDGE1_STRUCT_rivet$ShadowConfig
// How a shadow samples, compares and captures (`rivet::shadow`): start from
// `default_shadow_config()`.
struct ShadowConfig final {
  // Absolute tolerance: an element matches when |candidate − primary| ≤ atol + rtol·|primary|.
  double atol CXX_DEFAULT_VALUE(0);
  // Relative tolerance.
  double rtol CXX_DEFAULT_VALUE(0);
  // The share of requests compared, 0 to 1, spread evenly.
  double sample CXX_DEFAULT_VALUE(0);
  // Comparisons pending at once, the running one included; beyond it they are dropped.
  ::std::size_t queue CXX_DEFAULT_VALUE(0);
  // Where divergent requests are captured; empty for nowhere.
  ::rust::String capture_dir;
  // The most captures kept, the oldest going first.
  ::std::size_t capture_max_count CXX_DEFAULT_VALUE(0);
  // The most bytes the captures may take, the oldest going first.
  ::std::uint64_t capture_max_bytes CXX_DEFAULT_VALUE(0);

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_rivet$ShadowConfig

#ifndef CXXBRIDGE1_STRUCT_rivet$ShadowStats
#define CXXBRIDGE1_STRUCT_rivet$ShadowStats
// What a shadow has done so far; latencies in milliseconds, 0 before any.
struct ShadowStats final {
  // Requests the primary answered.
  ::std::uint64_t requests CXX_DEFAULT_VALUE(0);
  // Requests left out by sampling.
  ::std::uint64_t skipped CXX_DEFAULT_VALUE(0);
  // Comparisons dropped because the queue was full.
  ::std::uint64_t dropped CXX_DEFAULT_VALUE(0);
  // Requests compared.
  ::std::uint64_t compared CXX_DEFAULT_VALUE(0);
  // Compared requests whose every output matched.
  ::std::uint64_t matched CXX_DEFAULT_VALUE(0);
  // Compared requests with an output outside the tolerance.
  ::std::uint64_t diverged CXX_DEFAULT_VALUE(0);
  // Requests on which the candidate failed or panicked.
  ::std::uint64_t candidate_errors CXX_DEFAULT_VALUE(0);
  // Divergent requests captured.
  ::std::uint64_t captured CXX_DEFAULT_VALUE(0);
  // Captures that could not be written.
  ::std::uint64_t capture_errors CXX_DEFAULT_VALUE(0);
  // The primary's median run time.
  double primary_p50_ms CXX_DEFAULT_VALUE(0);
  // The primary's 99th-percentile run time.
  double primary_p99_ms CXX_DEFAULT_VALUE(0);
  // The candidate's median run time.
  double candidate_p50_ms CXX_DEFAULT_VALUE(0);
  // The candidate's 99th-percentile run time.
  double candidate_p99_ms CXX_DEFAULT_VALUE(0);

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_rivet$ShadowStats

#ifndef CXXBRIDGE1_STRUCT_rivet$BackendOption
#define CXXBRIDGE1_STRUCT_rivet$BackendOption
// One key=value option handed to a `ScorerBackend`'s `load`.
struct BackendOption final {
  // The key, one of the backend's `option_keys()`.
  ::rust::String key;
  // The value as given.
  ::rust::String value;

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_rivet$BackendOption

#ifndef CXXBRIDGE1_STRUCT_rivet$LoadedModel
#define CXXBRIDGE1_STRUCT_rivet$LoadedModel
// A loaded model, shared by every thread that runs it.
struct LoadedModel final : public ::rust::Opaque {
  // The shadow's counts and latencies; throws `RIVET_ERROR_INVALID_ARGUMENT` for a model
  // that is not a shadow.
  ::rivet::ShadowStats shadow_stats() const;

  // Waits until every queued comparison is done (a shadow only, as `shadow_stats`).
  void shadow_flush() const;

  // The name of the backend that runs the model.
  ::rust::String backend() const noexcept;

  // The inputs it takes, in positional order.
  ::rust::Vec<::rivet::TensorSpec> inputs() const noexcept;

  // The outputs it returns, in order (empty where the model does not say).
  ::rust::Vec<::rivet::TensorSpec> outputs() const noexcept;

  // Runs the model on borrowed tensors, by name or (all names empty) by position. Safe
  // to call from many threads at once. Throws `RIVET_ERROR_INVALID_TENSOR` for bytes
  // that do not match dtype and shape, `RIVET_ERROR_INVALID_INPUT` for inputs that do
  // not match the signature, `RIVET_ERROR_BACKEND` when the backend fails.
  ::rust::Box<::rivet::ModelOutputs> run(::rust::Slice<::rivet::TensorRef const> inputs) const;

  ~LoadedModel() = delete;

private:
  friend ::rust::layout;
  struct layout {
    static ::std::size_t size() noexcept;
    static ::std::size_t align() noexcept;
  };
};
#endif // CXXBRIDGE1_STRUCT_rivet$LoadedModel

#ifndef CXXBRIDGE1_STRUCT_rivet$LoadConfig
#define CXXBRIDGE1_STRUCT_rivet$LoadConfig
// How to load a model: backend, backend options, threads.
struct LoadConfig final : public ::rust::Opaque {
  // Chooses the backend by name.
  void set_backend(::rust::Str name);

  // Adds a backend option, `[BACKEND.]KEY=VALUE` (the backend checks it at load).
  void set_option(::rust::Str setting);

  // Threads for one operator and across operators; 0 keeps the backend's default.
  void set_threads(::std::uint32_t intra_op, ::std::uint32_t inter_op) noexcept;

  ~LoadConfig() = delete;

private:
  friend ::rust::layout;
  struct layout {
    static ::std::size_t size() noexcept;
    static ::std::size_t align() noexcept;
  };
};
#endif // CXXBRIDGE1_STRUCT_rivet$LoadConfig

#ifndef CXXBRIDGE1_STRUCT_rivet$ModelOutputs
#define CXXBRIDGE1_STRUCT_rivet$ModelOutputs
// The outputs of one run, owned by Rivet.
struct ModelOutputs final : public ::rust::Opaque {
  // How many outputs there are.
  ::std::size_t size() const noexcept;

  // The name of output `index`.
  ::rust::Str name(::std::size_t index) const;

  // The index of the output called `name`; throws listing the names when there is none.
  ::std::size_t index_of(::rust::Str name) const;

  // The element type of output `index`.
  ::rivet::DType dtype(::std::size_t index) const;

  // The shape of output `index`.
  ::rust::Vec<::std::int64_t> shape(::std::size_t index) const;

  // The bytes of output `index`, valid as long as these outputs.
  ::rust::Slice<::std::uint8_t const> bytes(::std::size_t index) const;

  // Output `index` as f32 values (throws if it is another dtype).
  ::rust::Slice<float const> f32s(::std::size_t index) const;

  // Output `index` as f64 values.
  ::rust::Slice<double const> f64s(::std::size_t index) const;

  // Output `index` as i64 values.
  ::rust::Slice<::std::int64_t const> i64s(::std::size_t index) const;

  // Output `index` as i32 values.
  ::rust::Slice<::std::int32_t const> i32s(::std::size_t index) const;

  // Output `index` as u8 values (dtype u8 or bool).
  ::rust::Slice<::std::uint8_t const> u8s(::std::size_t index) const;

  ~ModelOutputs() = delete;

private:
  friend ::rust::layout;
  struct layout {
    static ::std::size_t size() noexcept;
    static ::std::size_t align() noexcept;
  };
};
#endif // CXXBRIDGE1_STRUCT_rivet$ModelOutputs

// Shadow mode's defaults: tolerances 1e-5, every request, a queue of 64, no capture
// (then 100 captures and 256 MiB once `capture_dir` is set).
::rivet::ShadowConfig default_shadow_config() noexcept;

// Wraps `primary` and `candidate` into one model that answers with the primary and
// compares the candidate on the same inputs on a thread of its own. Throws
// `RIVET_ERROR_INVALID_INPUT` when their signatures differ, `RIVET_ERROR_INVALID_OPTION`
// for a value out of range.
::rust::Box<::rivet::LoadedModel> shadow(::rivet::LoadedModel const &primary, ::rivet::LoadedModel const &candidate, ::rivet::ShadowConfig const &config);

// Loads the model at `path` on the backend named `backend` (`auto`, `tch`, `ort`,
// `candle`, or a registered or library backend). Throws `RIVET_ERROR_MODEL_LOAD`
// naming the path and backend, `RIVET_ERROR_INVALID_OPTION` for an unknown backend.
::rust::Box<::rivet::LoadedModel> load(::rust::Str path, ::rust::Str backend);

// Loads the model at `path` as `config` says.
::rust::Box<::rivet::LoadedModel> load_with(::rust::Str path, ::rivet::LoadConfig const &config);

// A configuration with Rivet's defaults (backend `auto`).
::rust::Box<::rivet::LoadConfig> new_load_config() noexcept;

// Registers a C++ backend under `name`: `rivet::load(path, name)` then makes its
// scorers. Throws `RIVET_ERROR_INVALID_OPTION` for a bad or taken name.
void register_scorer_backend(::rust::Str name, ::std::unique_ptr<::rivet::ScorerBackend> backend);

// Wraps one scorer as a model of the backend `name`: its inputs are checked against
// its declared signature like any model's.
::rust::Box<::rivet::LoadedModel> wrap_scorer(::rust::Str name, ::std::unique_ptr<::rivet::Scorer> scorer);

// The names of the registered backends.
::rust::Vec<::rust::String> backends() noexcept;

// The code of a `rust::Error` thrown by this API, from its `what()`.
::rivet::ErrorCode error_code(::rust::Str what) noexcept;

// The message of a `rust::Error` thrown by this API, without the code.
::rust::Str error_message(::rust::Str what) noexcept;
} // namespace rivet

#ifdef __clang__
#pragma clang diagnostic pop
#endif // __clang__
